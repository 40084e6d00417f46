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
