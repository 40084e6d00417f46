"""Feature extraction on cached embeddings: the same numbers as the image path, reused, never stale."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from imgcls import Classifier
from imgcls.config import load_train_config
from imgcls.data.source import resolve_data
from imgcls.models.factory import create_model
from imgcls.training import features as features_module
from imgcls.training.features import cached_features, embed, file_features, supports_cached_features
from imgcls.training.fit import train
from tests.helpers import make_class_tree, make_train_val, pattern_image


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet", "test_vit", "test_convnext",
                                  "small_cnn", "cifar_cnn", "resnet_cifar"])
def test_classifier_of_the_embedding_is_the_model_output(name: str) -> None:
    """The contract caching relies on: get_classifier()(forward_head(pre_logits=True)) == forward()."""
    created = create_model(name, 3, pretrained=False, img_size=32 if "cnn" in name or "cifar" in name else None)
    model = created.model.eval()
    assert supports_cached_features(model)
    size = created.preprocess.img_size
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model.get_classifier()(embed(model, images)), model(images))


@pytest.fixture(scope="module")
def pretrained_small_cnn(tiny_run: Path) -> str:
    """A small_cnn trained on the tiny data: "pretrained" weights whose features mean something."""
    return str(tiny_run / "best.pt")


@pytest.fixture(scope="module")
def fe_run(tiny_data: Path, pretrained_small_cnn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = load_train_config(data=str(tiny_data), model="small_cnn", weights=pretrained_small_cnn,
                               strategy="linear-probe", epochs=3, batch_size=16, workers=0,
                               out=str(tmp_path_factory.mktemp("fe")), name="fe")
    return train(config).path


def test_cached_feature_training_scores_as_evaluate_does_on_the_images(fe_run: Path) -> None:
    metrics = json.loads((fe_run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
    evaluation = Classifier.load(fe_run).evaluate()  # best.pt, real images, the Predictor's path
    assert evaluation["accuracy"] == pytest.approx(metrics["best_val_acc"], abs=1e-6)
    # The run's report was computed from the cached val embeddings, without the images: the same answers.
    reported = json.loads((fe_run / "evaluation.json").read_text())
    assert reported["metrics"]["accuracy"] == pytest.approx(evaluation["accuracy"], abs=1e-6)
    assert reported["metrics"]["confusion_matrix"] == evaluation["confusion_matrix"]


def test_feature_extraction_checkpoint_holds_the_whole_model_with_a_trained_head(fe_run: Path,
                                                                                  pretrained_small_cnn: str) -> None:
    state = torch.load(fe_run / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    start = torch.load(pretrained_small_cnn, map_location="cpu", weights_only=True)["state_dict"]
    backbone = [k for k in state if not k.startswith("model.classifier.")]
    assert len(backbone) > 10 and all(torch.equal(state[k], start[k]) for k in backbone)  # frozen, complete
    assert any(not torch.equal(state[k], start[k]) for k in state if k.startswith("model.classifier."))


def _split_features(data: Path, model: torch.nn.Module, preprocess, **kwargs):  # noqa: ANN001, ANN202
    source = resolve_data(str(data))
    return cached_features(model, source, "val", preprocess, {"arch": "test"}, **kwargs)


def test_features_are_cached_and_reused_until_data_model_or_preprocessing_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    data = make_train_val(tmp_path / "data", ["a", "b"], train=4, val=3)
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "cache"))
    calls = []
    real_extract = features_module.extract
    monkeypatch.setattr(features_module, "extract", lambda *a, **k: calls.append(1) or real_extract(*a, **k))
    created = create_model("small_cnn", 2, pretrained=False, img_size=32)
    first = _split_features(data, created.model, created.preprocess)
    again = _split_features(data, created.model, created.preprocess)
    assert len(calls) == 1 and torch.equal(first.features, again.features)  # second time from the cache

    _split_features(data, created.model, created.preprocess, view="hflip")
    assert len(calls) == 2  # another view is another entry

    other_size = create_model("small_cnn", 2, pretrained=False, img_size=40)
    other_size.model.load_state_dict(created.model.state_dict())
    _split_features(data, other_size.model, other_size.preprocess)
    assert len(calls) == 3  # preprocessing changed

    with torch.no_grad():
        next(created.model.features.parameters()).add_(1.0)
    _split_features(data, created.model, created.preprocess)
    assert len(calls) == 4  # backbone weights changed

    with torch.no_grad():
        created.model.get_classifier().weight.add_(1.0)
    _split_features(data, created.model, created.preprocess)
    assert len(calls) == 4  # the head does not change the features

    image = next((data / "val" / "a").iterdir())
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    _split_features(data, created.model, created.preprocess)
    assert len(calls) == 5 - 1  # touched, same bytes: nothing to extract
    pattern_image(1, np.random.default_rng(7)).save(image)
    changed = _split_features(data, created.model, created.preprocess)
    assert len(calls) == 5 and len(changed) == 6  # a file's content changed


def test_only_files_never_seen_are_extracted_after_adding_moving_or_resplitting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_train_val(tmp_path / "data", ["a", "b"], train=4, val=3)
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "cache"))
    extracted: list[int] = []
    real_extract = features_module.extract
    monkeypatch.setattr(features_module, "extract",
                        lambda model, dataset, *a, **k: extracted.append(len(dataset)) or real_extract(
                            model, dataset, *a, **k))
    created = create_model("small_cnn", 2, pretrained=False, img_size=32)
    first = _split_features(data, created.model, created.preprocess)
    assert extracted == [6]

    make_class_tree(data / "val", ["a"], 2, seed=9, start=100)  # two new files
    moved = data / "val" / "b" / "moved.png"
    os.replace(next((data / "val" / "a").glob("0000.png")), moved)  # one file changes class
    grown = _split_features(data, created.model, created.preprocess)
    assert extracted == [6, 2] and len(grown) == 8
    row = resolve_data(str(data)).paths("val").index(str(moved))
    assert int(grown.labels[row]) == 1  # its new class, its old embedding
    assert any(torch.equal(grown.features[row], f) for f in first.features)

    cached_features(created.model, resolve_data(str(data)), "train", created.preprocess, {"arch": "test"})
    assert extracted == [6, 2, 8]

    # The same files split another way (a folder of class folders, split by imgcls): nothing to extract.
    flat = tmp_path / "flat"
    for image in data.glob("*/*/*.png"):
        (flat / image.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(image, flat / image.parent.name / f"{image.parent.parent.name}-{image.name}")
    source = resolve_data(str(flat), val_split=0.5)
    for split in ("train", "val"):
        cached_features(created.model, source, split, created.preprocess, {"arch": "test"})
    assert extracted == [6, 2, 8]


def test_decoding_in_threads_gives_the_rows_of_decoding_in_this_thread_and_skips_undecodable_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    images = sorted(str(p) for p in make_class_tree(tmp_path / "data", ["a", "b"], 4).rglob("*.png"))
    broken = tmp_path / "data" / "a" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")
    paths = [*images[:3], str(broken), *images[3:]]
    created = create_model("small_cnn", 2, pretrained=False, img_size=32)
    got = {}
    for workers in (0, 2):
        monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / f"cache{workers}"))
        with caplog.at_level(logging.WARNING, logger="imgcls"):
            got[workers] = file_features(created.model, paths, created.preprocess, {"arch": "test"},
                                         batch_size=3, workers=workers)
        assert "broken.png" in caplog.text
        caplog.clear()
    (serial, serial_rows), (threaded, threaded_rows) = got[0], got[2]
    assert serial_rows == threaded_rows == [0, 1, 2, 4, 5, 6, 7, 8]
    assert torch.allclose(serial, threaded, atol=1e-6)


def test_a_damaged_cache_entry_is_extracted_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:

    data = make_train_val(tmp_path / "data", ["a", "b"], train=2, val=2)
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "cache"))
    created = create_model("small_cnn", 2, pretrained=False, img_size=32)
    first = _split_features(data, created.model, created.preprocess)
    entries = [p for p in (tmp_path / "cache" / "features").rglob("*") if p.is_file()]
    assert entries
    for entry in entries:
        entry.write_bytes(b"not a tensor file")
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        again = _split_features(data, created.model, created.preprocess)
    assert torch.equal(first.features, again.features)
    assert "unreadable" in caplog.text


@pytest.mark.slow
def test_cutmix_or_no_cache_falls_back_to_running_the_backbone(tiny_data: Path, pretrained_small_cnn: str,
                                                               tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_train_config(data=str(tiny_data), model="small_cnn", weights=pretrained_small_cnn,
                               strategy="feature-extraction", epochs=1, batch_size=16, workers=0, cutmix=1.0,
                               out=str(tmp_path), name="cutmix")
    with caplog.at_level(logging.INFO, logger="imgcls"):
        run = train(config).path
    assert "no feature cache" in caplog.text
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["recipe"]["inputs"] == "images"


def test_timm_feature_extraction_with_local_weights_trains_on_the_cache(tiny_data: Path, tmp_path: Path) -> None:
    weights = tmp_path / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    config = load_train_config(data=str(tiny_data), model="test_resnet", weights=str(weights), epochs=1,
                               batch_size=16, workers=0, img_size=32, out=str(tmp_path), name="resnet")
    run = train(config).path
    checkpoint = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["recipe"]["inputs"] == "features"
    assert checkpoint["imgcls"]["strategy"] == "feature-extraction"


def test_a_run_on_cached_features_reports_its_suspect_labels(fe_run: Path) -> None:
    report = (fe_run / "report.html").read_text(encoding="utf-8")
    assert "Suspect labels" in report


def test_both_views_from_one_decoding_are_the_views_extracted_apart(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Training with mirrored copies decodes each file once: its mirrored embedding is the one the mirrored
    view alone gives, both views are cached, and a file only one view lacks is extracted once more."""
    data = make_train_val(tmp_path / "data", ["a", "b"], train=4, val=3)
    created = create_model("small_cnn", 2, pretrained=False, img_size=32)
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "apart"))
    plain = _split_features(data, created.model, created.preprocess)
    flipped = _split_features(data, created.model, created.preprocess, view="hflip")

    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "together"))
    decoded: list[str] = []
    real_load = features_module.load_image
    monkeypatch.setattr(features_module, "load_image", lambda path, *a: decoded.append(path) or real_load(path, *a))
    both = _split_features(data, created.model, created.preprocess, mirrored=True)
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == 6  # each file once
    assert torch.equal(both.labels, plain.labels)
    assert torch.allclose(both.features, plain.features, atol=1e-5)
    assert torch.allclose(both.mirrored, flipped.features, atol=1e-5)
    assert not torch.allclose(both.features, both.mirrored, atol=1e-3)  # the pictures are not symmetric

    alone = _split_features(data, created.model, created.preprocess, view="hflip")
    assert len(decoded) == 6 and torch.equal(alone.features, both.mirrored)  # from the cache
    make_class_tree(data / "val", ["a"], 1, seed=9, start=100)  # one new file: plain view only
    _split_features(data, created.model, created.preprocess)
    again = _split_features(data, created.model, created.preprocess, mirrored=True)
    assert len(decoded) == 8 and len(again) == 7  # the new file, once for plain, once for both views
