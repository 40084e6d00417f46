"""Each recipe flag acts: schedules, warm-up, layer decay, Mixup/CutMix, label smoothing,
class balance, early stopping, precision and seeding."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from imgcls.config import load_train_config
from imgcls.data.datamodule import FeatureDataModule, class_weights
from imgcls.errors import ConfigError
from imgcls.models.factory import create_model
from imgcls.models.module import ClassifierModule
from imgcls.training.fit import train

RECIPE = {"optimizer": "adamw", "lr": 0.1, "weight_decay": 0.0, "momentum": 0.9, "scheduler": "cosine",
          "warmup_epochs": 0, "epochs": 9, "label_smoothing": 0.0, "mixup": 0.0, "cutmix": 0.0,
          "class_weights": None}


def make_module(name: str = "small_cnn", classes: int = 3, **recipe) -> ClassifierModule:  # noqa: ANN003
    created = create_model(name, classes, pretrained=False, img_size=32)
    meta = {"classes": [str(i) for i in range(classes)]}
    return ClassifierModule(created.model, meta, {**RECIPE, **recipe})


def lr_by_epoch(module: ClassifierModule, metrics: list[float] | None = None) -> list[list[float]]:
    """Learning rate of every parameter group, epoch by epoch, stepping the schedule as Lightning does."""
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for epoch in range(module.recipe.epochs):
        rates.append([group["lr"] for group in optimizer.param_groups])
        scheduler.step(epoch=epoch + 1, metric=metrics[epoch] if metrics else None)
    return rates


def test_schedules_shape_the_learning_rate() -> None:
    top = [max(r) for r in lr_by_epoch(make_module(scheduler="cosine", warmup_epochs=2))]
    assert top[0] < top[1] < top[2] == pytest.approx(0.1)  # linear warm-up
    assert all(a > b for a, b in zip(top[2:], top[3:]))  # then cosine decay
    step = [max(r) for r in lr_by_epoch(make_module(scheduler="step"))]
    assert step[:3] == [pytest.approx(0.1)] * 3 and step[3] == pytest.approx(0.01)  # x0.1 every epochs/3
    none = [max(r) for r in lr_by_epoch(make_module(scheduler="none", warmup_epochs=1))]
    assert none[0] < none[1] and none[1:] == pytest.approx([0.1] * 8)
    wsd = [max(r) for r in lr_by_epoch(make_module(scheduler="wsd", warmup_epochs=1, epochs=21))]
    assert wsd[0] < wsd[1] and wsd[1:18] == pytest.approx([0.1] * 17)  # warm-up, then steady
    assert wsd[17] > wsd[18] > wsd[19] > wsd[20] >= 0.1 * 0.01  # the last fifth (4 of 20 epochs) decays
    short = [max(r) for r in lr_by_epoch(make_module(scheduler="wsd", epochs=2))]
    assert short[0] == pytest.approx(0.1) and short[1] < 0.1  # a 2-epoch run still decays in its last epoch
    plateau = [max(r) for r in lr_by_epoch(make_module(scheduler="plateau", epochs=9), metrics=[0.5] * 9)]
    assert plateau[0] == pytest.approx(0.1) and plateau[-1] < 0.1  # no improvement -> lower rate


def test_layer_decay_gives_earlier_layers_lower_rates() -> None:
    rates = lr_by_epoch(make_module("test_resnet", layer_decay=0.5, scheduler="none", epochs=1))[0]
    assert max(rates) == pytest.approx(0.1)  # the head at the full rate
    assert min(rates) < 0.1 * 0.5 ** 2  # the stem several layers down
    flat = lr_by_epoch(make_module("test_resnet", layer_decay=1.0, scheduler="none", epochs=1))[0]
    assert flat == pytest.approx([0.1] * len(flat))


def _first_layer_input(module: ClassifierModule, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    seen = []
    handle = module.model.features[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    module.training_step(batch, 0)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("setting", [{"mixup": 1.0}, {"cutmix": 1.0}])
def test_mixup_and_cutmix_mix_the_training_images(setting: dict) -> None:
    torch.manual_seed(0)
    batch = (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))
    module = make_module()
    module.log = lambda *a, **k: None  # no Trainer attached
    assert torch.equal(_first_layer_input(module, batch), batch[0])
    mixed = make_module(**setting)
    mixed.log = lambda *a, **k: None
    assert not torch.equal(_first_layer_input(mixed, batch), batch[0])


def test_label_smoothing_and_class_weights_change_the_loss() -> None:
    torch.manual_seed(0)
    batch = (torch.randn(6, 3, 32, 32), torch.tensor([0, 0, 0, 0, 1, 2]))
    losses = {}
    for name, recipe in {"plain": {}, "smooth": {"label_smoothing": 0.3},
                         "weighted": {"class_weights": class_weights(batch[1].tolist(), 3).tolist()}}.items():
        torch.manual_seed(1)
        module = make_module(**recipe).eval()  # eval: no dropout, so only the recipe differs
        module.log = lambda *a, **k: None
        losses[name] = float(module.training_step(batch, 0))
    assert losses["smooth"] != pytest.approx(losses["plain"])
    assert losses["weighted"] != pytest.approx(losses["plain"])


def test_balance_sampler_draws_classes_evenly() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    module = FeatureDataModule((torch.randn(100, 4), labels), (torch.randn(4, 4), labels[:4]), num_classes=2,
                               batch_size=10, balance="sampler", seed=0)
    drawn = Counter(int(y) for _, batch in module.train_dataloader() for y in batch)
    assert 35 <= drawn[1] <= 65  # about half, where plain shuffling gives 10
    plain = FeatureDataModule((torch.randn(100, 4), labels), (torch.randn(4, 4), labels[:4]), num_classes=2,
                              batch_size=10, seed=0)
    assert Counter(int(y) for _, batch in plain.train_dataloader() for y in batch)[1] == 10


def _rows(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in json.loads((run / "metrics.json").read_text())["epochs"]]


def _tiny(tiny_data: Path, out: Path, **options) -> Path:  # noqa: ANN003
    settings = {"data": str(tiny_data), "model": "small_cnn", "epochs": 2, "batch_size": 16, "out": str(out),
                **options}
    return train(load_train_config(**settings)).path


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_other_metrics(tiny_data: Path, tmp_path: Path) -> None:
    # A loader worker process too: its augmentation must be seeded as well.
    first = _tiny(tiny_data, tmp_path, name="a", seed=7, epochs=1, workers=1)
    second = _tiny(tiny_data, tmp_path, name="b", seed=7, epochs=1, workers=1)
    third = _tiny(tiny_data, tmp_path, name="c", seed=8, epochs=1, workers=1)
    assert _rows(first) == _rows(second)
    assert _rows(first) != _rows(third)


@pytest.mark.slow
def test_patience_stops_when_val_accuracy_stalls(tiny_data: Path, tmp_path: Path) -> None:
    run = _tiny(tiny_data, tmp_path, name="patience", epochs=8, lr=1e-9, patience=1, workers=0)
    assert len(_rows(run)) == 2  # epoch 2 did not beat epoch 1


@pytest.mark.slow
def test_bf16_mixed_precision_trains_on_cpu(tiny_data: Path, tmp_path: Path) -> None:
    run = _tiny(tiny_data, tmp_path, name="bf16", epochs=1, precision="bf16-mixed", workers=0)
    assert _rows(run)[0]["val_acc"] is not None


def test_fp16_on_a_cpu_is_a_user_error(tiny_data: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU runs 16-mixed")
    with pytest.raises(ConfigError, match="bf16-mixed"):
        _tiny(tiny_data, tmp_path, name="fp16", epochs=1, precision="16-mixed")


def test_bf16_on_a_cpu_without_bfloat16_instructions_warns_it_is_slower(monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from imgcls.training import setup

    if torch.cuda.is_available():
        pytest.skip("on a GPU bf16-mixed is checked against the GPU")
    monkeypatch.setattr(setup, "_cpu_has_bfloat16", lambda: False)
    with caplog.at_level("WARNING"):
        setup.check_precision("bf16-mixed")
        setup.check_precision("32")
    assert len(caplog.records) == 1 and "slower than --precision 32" in caplog.records[0].getMessage()


def test_a_recipe_is_plain_data_in_checkpoints_and_old_dicts_read_with_the_defaults(tmp_path: Path) -> None:
    from imgcls.models.recipe import Recipe

    module = make_module(class_weights=[1.0, 2.0, 0.5], frozen=True)
    assert isinstance(module.recipe, Recipe) and module.recipe.class_weights == (1.0, 2.0, 0.5)
    saved = module.hparams["recipe"]
    path = tmp_path / "recipe.pt"
    torch.save({"recipe": saved}, path)
    assert Recipe.from_dict(torch.load(path, weights_only=True)["recipe"]) == module.recipe
    # A recipe saved before momentum, warm-up and label smoothing were settings: the defaults fill them in.
    old = Recipe.from_dict({"optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "scheduler": "step", "epochs": 4})
    assert (old.momentum, old.warmup_epochs, old.label_smoothing, old.inputs) == (0.9, 0, 0.0, "images")
