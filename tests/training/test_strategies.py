"""Strategies: which parameters train, in which stages, at which rates -- and staged as one run."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import timm
import torch
import yaml
from timm.models import group_parameters

from imgcls import Classifier
from imgcls.config import load_train_config
from imgcls.errors import ConfigError
from imgcls.training.fit import train
from imgcls.training.strategies import plan_stages


def test_staged_plans_a_head_stage_then_a_slower_full_stage() -> None:
    head, full = plan_stages("staged", epochs=10, lr=3e-3, layer_decay=0.85, warmup_epochs=1)
    assert (head.epochs, head.frozen, head.lr) == (5, True, 3e-3)
    assert (full.epochs, full.frozen) == (5, False) and full.lr < head.lr / 10
    assert full.warmup_epochs == 1  # fine-tuning eases in from the trained head
    assert full.layer_decay == 0.85 and head.layer_decay == 1.0
    assert [s.epochs for s in plan_stages("staged", 7, 1e-3, 0.85, 0, head_epochs=2)] == [2, 5]
    (only,) = plan_stages("feature-extraction", 4, 1e-3, 0.85, 0)
    assert only.frozen and only.layer_decay == 1.0  # no layer decay for a lone head
    (tune,) = plan_stages("finetune", 4, 1e-3, 0.7, 0)
    assert not tune.frozen and tune.layer_decay == 0.7
    (scratch,) = plan_stages("scratch", 4, 1e-3, 0.7, 0, trainable_blocks=3)
    assert scratch.layer_decay == 1.0 and scratch.trainable_blocks is None  # nothing pretrained to keep
    head, full = plan_stages("staged", 10, 3e-3, 0.85, 0, trainable_blocks=3)
    assert (head.trainable_blocks, full.trainable_blocks) == (None, 3)
    assert plan_stages("finetune", 4, 1e-3, 0.7, 0, trainable_blocks=3)[0].trainable_blocks == 3


@pytest.fixture(scope="module")
def staged_run(tiny_data: Path, tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = load_train_config(data=str(tiny_data), model="small_cnn", weights=str(tiny_run / "best.pt"),
                               strategy="staged", epochs=3, head_epochs=2, batch_size=16, workers=0,
                               out=str(tmp_path_factory.mktemp("staged")), name="staged")
    return train(config).path


def test_staged_is_one_run_with_continuous_epochs(staged_run: Path) -> None:
    metrics = json.loads((staged_run / "metrics.json").read_text())
    rows = metrics["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[2]["lr"] < rows[0]["lr"]  # stage 2 fine-tunes at a lower rate
    assert metrics["best_val_acc"] == max(r["val_acc"] for r in rows)
    last = torch.load(staged_run / "last.pt", map_location="cpu", weights_only=True)
    assert last["imgcls"]["stage"] == 1 and last["imgcls"]["epoch"] == 3
    best = torch.load(staged_run / "best.pt", map_location="cpu", weights_only=True)
    assert best["imgcls"]["epoch"] == metrics["best_epoch"]
    assert Classifier.load(staged_run).evaluate()["accuracy"] == pytest.approx(metrics["best_val_acc"])


def test_staged_stage_two_trains_the_backbone(staged_run: Path, tiny_run: Path) -> None:
    start = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    last = torch.load(staged_run / "last.pt", map_location="cpu", weights_only=True)
    assert last["hyper_parameters"]["recipe"]["inputs"] == "images"  # stage 2 runs the whole network
    conv = "model.features.0.weight"
    assert not torch.equal(last["state_dict"][conv], start[conv])


class SpoiledLastHeadEpoch(pl.Callback):
    """Records the head after each epoch's training and at each stage's start; spoils the head stage's last
    epoch (noise into the classifier before it is validated), so that stage's best epoch is its first."""

    def __init__(self, spoil_epoch: int):
        self.spoil_epoch, self.after, self.starts = spoil_epoch, {}, []

    @staticmethod
    def head(pl_module: pl.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in pl_module.model.get_classifier().state_dict().items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.starts.append(self.head(pl_module))

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = pl_module.recipe.epoch_offset + trainer.current_epoch + 1
        if epoch == self.spoil_epoch:
            with torch.no_grad():
                for parameter in pl_module.model.get_classifier().parameters():
                    parameter.add_(torch.randn_like(parameter) * 10)
        self.after[epoch] = self.head(pl_module)


@pytest.mark.slow
def test_stage_two_fine_tunes_the_best_head_not_the_last(tiny_data: Path, tiny_run: Path, tmp_path: Path) -> None:
    spy = SpoiledLastHeadEpoch(spoil_epoch=2)
    config = load_train_config(data=str(tiny_data), model="small_cnn", weights=str(tiny_run / "best.pt"),
                               strategy="staged", epochs=3, head_epochs=2, batch_size=16, workers=0,
                               out=str(tmp_path), name="best-head")
    rows = json.loads((train(config, callbacks=[spy]).path / "metrics.json").read_text())["epochs"]
    assert rows[1]["val_acc"] < rows[0]["val_acc"]  # the spoiled epoch is not the head stage's best
    assert len(spy.starts) == 2
    for name, tensor in spy.starts[1].items():
        assert torch.equal(tensor, spy.after[1][name]), name  # stage 2 began from epoch 1's head


@pytest.mark.parametrize("blocks", [None, "all", 2])
def test_fine_tuning_small_data_trains_only_the_last_blocks(tiny_data: Path, resnet_weights: Path, tmp_path: Path,
                                                            blocks: int | str | None) -> None:
    settings = {} if blocks is None else {"trainable_blocks": blocks}
    config = load_train_config(data=str(tiny_data), model="test_resnet", weights=str(resnet_weights),
                               strategy="finetune", epochs=1, batch_size=16, workers=0, img_size=32,
                               out=str(tmp_path), name="ft", **settings)
    run = train(config).path
    saved = yaml.safe_load((run / "config.yaml").read_text())
    start = torch.load(resnet_weights, map_location="cpu", weights_only=True)
    tuned = {k.removeprefix("model."): v for k, v in
             torch.load(run / "last.pt", map_location="cpu", weights_only=True)["state_dict"].items()}
    model = timm.create_model("test_resnet")
    groups = group_parameters(model, model.group_matcher(coarse=False))
    head = max(groups)
    moved = {group: any(not torch.equal(tuned[n], start[n]) for n in names) for group, names in groups.items()
             if group < head}  # the head is new: it always trains
    if blocks is None:  # tiny images are far from the pretraining photos: every layer trains unless told
        assert "trainable_blocks" not in saved.get("decided", {})
        assert all(moved.values()), moved
        return
    assert "trainable_blocks" not in saved.get("decided", {})
    if blocks == "all":
        assert all(moved.values()), moved
        return
    assert moved == {group: group > head - blocks for group in moved}
    # a frozen block's BatchNorm keeps its pretrained statistics too
    assert torch.equal(tuned["bn1.running_mean"], start["bn1.running_mean"])


def test_pretrained_strategies_without_weights_are_refused(tiny_data: Path, tmp_path: Path) -> None:
    for strategy in ("feature-extraction", "finetune", "staged"):
        with pytest.raises(ConfigError, match="needs pretrained weights"):
            train(load_train_config(data=str(tiny_data), model="small_cnn", strategy=strategy, out=str(tmp_path)))
