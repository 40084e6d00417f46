"""Grad-CAM overlays: one per image, for CNNs (scratch and timm) and ViTs; exported graphs refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from imgcls.api import Classifier
from imgcls.errors import CheckpointError
from imgcls.models.checkpoint import MODULE_PREFIX, checkpoint_meta
from imgcls.models.factory import create_model


def _checkpoint(name: str, path: Path, img_size: int = 64) -> Path:
    """An imgcls checkpoint of timm's tiny test model ``name`` with random weights, 2 classes."""
    created = create_model(name, 2, pretrained=False, img_size=img_size)
    meta = checkpoint_meta(created.spec, ["ants", "bees"], created.preprocess)
    torch.save({"imgcls": meta, "state_dict": {MODULE_PREFIX + k: v for k, v in created.model.state_dict().items()}},
               path)
    return path


def _images(tiny_data: Path, count: int) -> list[Path]:
    return sorted((tiny_data / "val").rglob("*.png"))[:count]


def test_explain_writes_one_overlay_per_image_of_a_scratch_cnn(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    images = _images(tiny_data, 3)
    results = Classifier.load(tiny_run).explain(images, tmp_path / "cam")
    assert [r["path"] for r in results] == [str(p) for p in images]
    overlays = sorted((tmp_path / "cam").glob("*.gradcam.png"))
    assert len(overlays) == 3 and {r["overlay"] for r in results} == {str(p) for p in overlays}
    with Image.open(overlays[0]) as overlay:
        assert overlay.mode == "RGB" and overlay.size[0] > 8


@pytest.mark.parametrize("name", ["test_efficientnet", "test_vit"])
def test_explain_works_for_timm_cnns_and_vits(name: str, tiny_data: Path, tmp_path: Path) -> None:
    from imgcls.inference.explain import explainer_for

    explainer = explainer_for(_checkpoint(name, tmp_path / f"{name}.pt"))
    if name == "test_vit":
        assert explainer.layer.reshape is not None and explainer.layer.name.endswith("norm1")
    paths = [str(p) for p in _images(tiny_data, 2)]
    explanations = explainer.explain_files(paths, target="bees")
    assert [e.path for e in explanations] == paths and {e.label for e in explanations} == {"bees"}
    assert explanations[0].overlay.size == (64, 64)
    assert explanations[0].png().startswith(b"\x89PNG")


def test_explain_refuses_an_exported_graph(tmp_path: Path) -> None:
    from imgcls.inference.explain import explainer_for

    exported = tmp_path / "model.onnx"
    exported.write_bytes(b"not used")
    with pytest.raises(CheckpointError, match="PyTorch checkpoint"):
        explainer_for(exported)


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    import sys

    from imgcls.cli import main

    monkeypatch.setattr(sys, "argv", ["imgcls", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_explain_command_writes_overlays_and_refuses_exports_with_exit_2(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, _ = _cli(monkeypatch, capsys, "explain", tiny_run, tiny_data / "val" / "checker", "--out",
                        tmp_path / "cam", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == len(list((tiny_data / "val" / "checker").glob("*.png")))
    assert all(Path(r["overlay"]).is_file() for r in rows)
    exported = tmp_path / "model.onnx"
    exported.write_bytes(b"x")
    code, _, err = _cli(monkeypatch, capsys, "explain", exported, _images(tiny_data, 1)[0], "--out", tmp_path)
    assert code == 2 and "pass the run directory" in err and "Traceback" not in err
