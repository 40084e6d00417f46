"""The model factory: names, offline weights, scratch nets, weight files, rebuilding from a spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgcls.data.images import load_image
from imgcls.data.presets import EvalPreset
from imgcls.errors import ModelError
from imgcls.models.factory import build_model, create_model, resolve_arch
from imgcls.models.scratch import SCRATCH_MODELS

IMAGENET_BEE, IMAGENET_ANT = 309, 310


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet_18'.*resnet18"):
        resolve_arch("resnet_18")
    assert resolve_arch("efficientnet_lite0") == "tf_efficientnet_lite0"
    assert resolve_arch("small_cnn") == "small_cnn"


@pytest.mark.parametrize("name", ["efficientnet_lite0", pytest.param("efficientnet_lite1", marks=pytest.mark.slow),
                                  pytest.param("efficientnet_lite2", marks=pytest.mark.slow)])
def test_offline_efficientnet_lite_weights_recognise_ants_and_bees(ants_bees: Path, name: str) -> None:
    """The offline files map onto timm's tf_efficientnet_liteN: ImageNet's own ant/bee classes come out on top."""
    created = create_model(name, 1000, pretrained=True)
    assert "offline" in created.weights and created.spec.arch == f"tf_{name}"
    assert created.preprocess.mean == (0.5, 0.5, 0.5) and created.preprocess.interpolation == "bicubic"
    transform = EvalPreset(created.preprocess)
    hits = 0
    for folder, imagenet_class in (("bees", IMAGENET_BEE), ("ants", IMAGENET_ANT)):
        paths = sorted((ants_bees / "val" / folder).glob("*.jpg"))[:8]
        batch = torch.stack([transform(load_image(p)) for p in paths])
        with torch.inference_mode():
            top5 = created.model.eval()(batch).topk(5).indices
        hits += int((top5 == imagenet_class).any(dim=1).sum())
    assert hits >= 13, f"only {hits}/16 photos have their ImageNet class in the top 5"


def test_head_is_replaced_for_the_number_of_classes() -> None:
    created = create_model("efficientnet_lite0", 3, pretrained=True)
    assert created.model.get_classifier().out_features == 3
    assert created.spec.to_dict() == {"name": "efficientnet_lite0", "arch": "tf_efficientnet_lite0",
                                      "num_classes": 3, "kwargs": {}}


@pytest.mark.parametrize("name", sorted(SCRATCH_MODELS))
def test_scratch_nets_take_any_input_size(name: str) -> None:
    created = create_model(name, 4, pretrained=False, img_size=40)
    model = created.model.eval()
    assert created.weights is None and created.preprocess.img_size == 40
    for size in (28, 40, 64):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 4)
    features = model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True)
    assert features.shape == (2, model.num_features)


def test_cifar_stem_keeps_small_images_large() -> None:
    plain = create_model("resnet18", 10, pretrained=False).model.eval()
    stem = create_model("resnet18", 10, pretrained=False, cifar_stem=True).model.eval()
    assert stem.conv1.kernel_size == (3, 3) and stem.conv1.stride == (1, 1)
    x = torch.randn(1, 3, 32, 32)
    assert stem.forward_features(x).shape[-1] == 4 and plain.forward_features(x).shape[-1] == 1
    with pytest.raises(ModelError, match="cifar-stem"):
        create_model("efficientnet_lite0", 10, pretrained=False, cifar_stem=True)


def test_weights_file_and_rebuild_from_spec(tmp_path: Path) -> None:
    created = create_model("resnet18", 5, pretrained=False)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in created.model.state_dict().items()}}, path)
    # A 3-class model from a 5-class file: the backbone loads, the head starts fresh.
    loaded = create_model("resnet18", 3, weights=str(path))
    assert torch.equal(loaded.model.conv1.weight, created.model.conv1.weight)
    assert loaded.model.get_classifier().out_features == 3

    rebuilt = build_model(loaded.spec)
    rebuilt.load_state_dict(loaded.model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(rebuilt.eval()(x), loaded.model.eval()(x))

    with pytest.raises(ModelError, match="does not fit"):
        create_model("efficientnet_lite0", 3, weights=str(path))
    with pytest.raises(ModelError, match="not found"):
        create_model("resnet18", 3, weights=str(tmp_path / "missing.pth"))
