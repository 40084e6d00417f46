"""Feature extraction through onnxruntime: PyTorch's embeddings, PyTorch where the export fails, no thread left."""

from __future__ import annotations

import threading

import pytest
import timm
import torch
from torch.utils.data import TensorDataset

from imgcls.models.factory import embed
from imgcls.training import features as features_module
from imgcls.training import onnx_embed
from imgcls.training.features import extract


@pytest.fixture()
def always_onnx(monkeypatch: pytest.MonkeyPatch) -> list:
    """onnxruntime from the first image on; the list collects what each export attempt gave."""
    monkeypatch.setattr(features_module, "ONNX_MIN_IMAGES", 1)
    monkeypatch.setattr(onnx_embed, "_kept", None)
    made: list = []
    real = onnx_embed.onnx_embedder
    monkeypatch.setattr(onnx_embed, "onnx_embedder", lambda *a: made.append(real(*a)) or made[-1])
    return made


def dataset(count: int = 20) -> TensorDataset:
    images = torch.randn(count, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return TensorDataset(images, torch.arange(count) % 3)


def reference(model: torch.nn.Module, data: TensorDataset) -> torch.Tensor:
    with torch.inference_mode():
        return embed(model.eval(), data.tensors[0])


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet"])
def test_onnxruntime_gives_the_networks_embeddings(name: str, always_onnx: list) -> None:
    model = timm.create_model(name, num_classes=3)
    data = dataset()
    got = extract(model, data, batch_size=8, workers=0, desc="features")
    assert len(always_onnx) == 1 and always_onnx[0] is not None  # exported once, used for every batch
    assert torch.allclose(got.features, reference(model, data), atol=1e-4, rtol=1e-3)
    assert got.labels.tolist() == data.tensors[1].tolist()
    # the command waits for every non-daemon thread before it exits: extraction must leave none running
    assert not [t for t in threading.enumerate() if t.name.startswith("imgcls-embed")]


def test_the_same_network_is_exported_once_and_again_after_a_change(always_onnx: list) -> None:
    model = timm.create_model("test_efficientnet", num_classes=3)
    data = dataset()
    extract(model, data, batch_size=8, workers=0, desc="features train")
    extract(model, data, batch_size=8, workers=0, desc="features val")
    assert len(always_onnx) == 1
    with torch.no_grad():
        model.conv_stem.weight.mul_(2.0)  # fine-tuned since, in place
    got = extract(model, data, batch_size=8, workers=0, desc="features")
    assert len(always_onnx) == 2
    assert torch.allclose(got.features, reference(model, data), atol=1e-4, rtol=1e-3)


def test_a_new_network_is_exported_anew_even_at_a_reused_address(always_onnx: list) -> None:
    data = dataset()
    extract(timm.create_model("test_efficientnet", num_classes=3), data, batch_size=8, workers=0, desc="f")
    other = timm.create_model("test_efficientnet", num_classes=3)  # other random weights, versions alike
    got = extract(other, data, batch_size=8, workers=0, desc="f")
    assert len(always_onnx) == 2
    assert torch.allclose(got.features, reference(other, data), atol=1e-4, rtol=1e-3)


def test_a_network_that_does_not_export_runs_in_pytorch(always_onnx: list, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise RuntimeError("Unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    model = timm.create_model("test_efficientnet", num_classes=3)
    data = dataset()
    got = extract(model, data, batch_size=8, workers=0, desc="features")
    assert always_onnx == [None]
    assert torch.allclose(got.features, reference(model, data), atol=1e-5, rtol=1e-4)


def test_few_images_skip_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_embed, "_kept", None)
    tried: list = []
    monkeypatch.setattr(onnx_embed, "onnx_embedder", lambda *a: tried.append(a))
    extract(timm.create_model("test_efficientnet", num_classes=3), dataset(8), batch_size=8, workers=0, desc="f")
    assert not tried and features_module.ONNX_MIN_IMAGES > 8
