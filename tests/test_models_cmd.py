"""``imgcls models [PATTERN]``: built-in, timm and cached models, marking weights available offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgcls.models.catalog import as_glob, list_models
from tests.helpers import run_main


def _cache_repo(cache: Path, repo_id: str, files: dict[str, str]) -> None:
    """A model repo laid out as huggingface_hub caches it (blobs, snapshots/REV, refs/main)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "blobs").mkdir()
    for name, text in files.items():
        blob = repo / "blobs" / f"blob-{name}"
        blob.write_text(text)
        (snapshot / name).symlink_to(blob)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def by_name(entries: list) -> dict:
    return {e.name: e for e in entries}


def test_default_model_is_listed_once_with_offline_weights() -> None:
    entries = list_models("efficientnet_lite0")
    assert [e.name for e in entries].count("efficientnet_lite0") == 1
    assert by_name(entries)["efficientnet_lite0"].weights == "offline"
    assert by_name(entries)["tf_efficientnet_lite0"].weights == "offline"


def test_patterns_and_kinds_of_weights() -> None:
    entries = by_name(list_models("resnet"))
    assert {"resnet18", "resnet50", "resnet_cifar"} <= set(entries)  # a word matches anywhere
    assert entries["resnet_cifar"].source == "built-in" and entries["resnet_cifar"].weights == "none"
    assert entries["resnet18"].weights == "download"  # nothing cached here
    assert all(e.name.startswith("convnext_") for e in list_models("convnext_*"))
    assert as_glob("resnet") == "*resnet*" and as_glob("res*") == "res*"


def test_cached_hub_models_are_marked_offline(hf_cache: Path) -> None:
    _cache_repo(hf_cache, "timm/resnet18.a1_in1k", {"model.safetensors": "w", "config.json": "{}"})
    _cache_repo(hf_cache, "someone/tiny-vit", {"model.safetensors": "w", "config.json": json.dumps(
        {"architectures": ["ViTForImageClassification"], "model_type": "vit"})})
    _cache_repo(hf_cache, "someone/timm-net", {"model.safetensors": "w", "config.json": json.dumps(
        {"architecture": "resnet18", "num_classes": 10})})
    _cache_repo(hf_cache, "someone/text-model", {"model.safetensors": "w", "config.json": json.dumps(
        {"architectures": ["BertModel"]})})
    _cache_repo(hf_cache, "timm/resnet50.a1_in1k", {"config.json": "{}"})  # no weight file: not offline
    entries = by_name(list_models(offline_only=True))
    assert entries["resnet18"].weights == "offline" and "resnet18.a1_in1k" in entries["resnet18"].note
    assert entries["resnet18.a1_in1k"].source == "timm"
    assert entries["hf:someone/tiny-vit"].source == "transformers"
    assert entries["hf-hub:someone/timm-net"].source == "timm"
    assert not {"resnet50", "resnet50.a1_in1k", "hf:someone/text-model"} & set(entries)
    assert all(e.weights == "offline" for e in entries.values())


def test_cli_lists_as_text_and_json() -> None:
    code, out, _ = run_main("models", "lite0", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {"name": "efficientnet_lite0", "source": "built-in", "weights": "offline"}.items() <= rows[0].items()
    code, out, _ = run_main("models", "small_cnn")
    assert code == 0 and "small_cnn" in out and "built-in" in out
    code, out, _ = run_main("models", "no-such-model-name")
    assert code == 0 and "no models match" in out
