"""Strategies: which parameters train, in which stages, at which rates -- and staged as one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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
    (scratch,) = plan_stages("scratch", 4, 1e-3, 0.7, 0)
    assert scratch.layer_decay == 1.0


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


def test_pretrained_strategies_without_weights_are_refused(tiny_data: Path, tmp_path: Path) -> None:
    for strategy in ("feature-extraction", "finetune", "staged"):
        with pytest.raises(ConfigError, match="needs pretrained weights"):
            train(load_train_config(data=str(tiny_data), model="small_cnn", strategy=strategy, out=str(tmp_path)))
