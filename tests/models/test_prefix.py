"""Validation past a frozen prefix: the same embeddings as the whole network, the prefix run once per val batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from imgcls.config import load_train_config
from imgcls.models import prefix as prefix_module
from imgcls.models.factory import embed
from imgcls.models.prefix import FrozenPrefix, feature_layers
from imgcls.training.fit import train
from imgcls.training.strategies import freeze_early_blocks


def frozen_net(name: str, trainable_blocks: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=3)
    freeze_early_blocks(model, trainable_blocks)
    return model.eval().to(memory_format=torch.channels_last)


def images(seed: int, count: int = 12) -> torch.Tensor:
    return torch.randn(count, 3, 64, 64, generator=torch.Generator().manual_seed(seed)).contiguous(
        memory_format=torch.channels_last)


class Calls:
    """Counts the images the network's first layer sees."""

    def __init__(self, layer: torch.nn.Module):
        self.images = 0
        layer.register_forward_hook(lambda _m, inputs, _out: setattr(self, "images", self.images + len(inputs[0])))


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet"])
def test_later_epochs_skip_the_frozen_prefix_with_the_same_embeddings(name: str) -> None:
    model = frozen_net(name, trainable_blocks=3)
    batches = [images(1), images(2)]
    with torch.inference_mode():  # as Lightning validates
        check_the_cache(model, batches)


def check_the_cache(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    cache = FrozenPrefix.of(model, batches[0])
    assert cache is not None and cache.prefix and cache.rest  # the stem and early blocks; the last ones train
    calls = Calls(feature_layers(model)[0])
    for epoch in range(3):
        for index, x in enumerate(batches):
            assert torch.allclose(cache.embed(x, index), embed(model, x), atol=1e-5, rtol=1e-4), (epoch, index)
        if epoch == 0:
            assert calls.images == 2 * 24  # the cache's pass and the reference embed()
    assert calls.images == 2 * 24 + 2 * 24  # epochs 2 and 3: the reference embed() alone ran the first layer


def test_new_pixels_or_changed_weights_are_computed_again() -> None:
    model = frozen_net("test_efficientnet", trainable_blocks=3)
    x, other = images(1), images(3)

    def same() -> bool:
        with torch.inference_mode():
            return torch.allclose(cache.embed(other, 0), embed(model, other), atol=1e-5, rtol=1e-4)

    with torch.inference_mode():
        cache = FrozenPrefix.of(model, x)
        cache.embed(x, 0)
    assert same()  # another batch at the same index (a shuffled or re-split loader)
    with torch.no_grad():
        model.conv_stem.weight.mul_(1.5)  # what load_state_dict or an optimizer step does, in place
    assert same()
    with torch.no_grad():
        model.bn1.running_mean.add_(0.5)  # statistics count too
    assert same()


def test_nets_with_nothing_frozen_or_no_layer_sequence_validate_whole() -> None:
    trainable = timm.create_model("test_efficientnet", num_classes=3).eval()
    assert FrozenPrefix.of(trainable, images(1)) is None  # nothing frozen: nothing repeats between epochs
    vit = frozen_net("test_vit", trainable_blocks=2)
    assert feature_layers(vit) is None and FrozenPrefix.of(vit, images(1)) is None


def test_the_budget_bounds_what_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    model = frozen_net("test_efficientnet", trainable_blocks=3)
    x = images(1)
    with torch.inference_mode():
        cache = FrozenPrefix.of(model, x)
        assert cache is not None
        monkeypatch.setattr(prefix_module, "BUDGET_BYTES", 0)
        calls = Calls(feature_layers(model)[0])
        cache.embed(x, 0)
        cache.embed(x, 0)
    assert calls.images == 24  # nothing kept: the prefix ran both times


def test_fine_tuning_reports_the_same_val_figures_with_the_cache(tiny_data: Path, resnet_weights: Path,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def val_rows(name: str) -> list[float]:
        config = load_train_config(data=str(tiny_data), model="test_resnet", weights=str(resnet_weights),
                                   strategy="finetune", trainable_blocks=2, epochs=3, batch_size=16, workers=0,
                                   img_size=32, out=str(tmp_path), name=name)
        rows = json.loads((train(config).path / "metrics.json").read_text())["epochs"]
        return [value for row in rows for value in (row["val_loss"], row["val_acc"])]

    made: list[FrozenPrefix | None] = []
    of = FrozenPrefix.of
    monkeypatch.setattr(FrozenPrefix, "of", classmethod(lambda cls, *a: made.append(of(*a)) or made[-1]))
    cached = val_rows("cached")
    assert made and all(made), made  # validation went through the cache
    monkeypatch.setattr(prefix_module, "BUDGET_BYTES", 0)
    whole = val_rows("whole")
    assert len(cached) == 2 * 3 and cached == pytest.approx(whole, abs=1e-6)
