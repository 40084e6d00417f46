"""SIGTERM mid-epoch leaves a last.pt of the step reached; --resume trains the rest of the same batches."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from imgcls.config import load_train_config
from imgcls.errors import TrainingTerminated
from imgcls.training.fit import resume, train
from tests.helpers import run_cli, training_after_one_epoch


class SigtermAt(pl.Callback):
    """Sends SIGTERM to this process after a batch of an epoch counted over the whole run."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        if pl_module.recipe.epoch_offset + trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)


class SigtermInValidation(pl.Callback):
    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.current_epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)


class Batches(pl.Callback):
    """The labels of every training batch, in order: which samples each step trained on."""

    def __init__(self):
        self.seen: list[list[int]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object,
                             batch_idx: int) -> None:
        self.seen.append(batch[1].tolist())


def _rows(run: Path) -> list[tuple[int, float]]:
    return [(row["epoch"], row["lr"]) for row in json.loads((run / "metrics.json").read_text())["epochs"]]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["scratch", "staged"])
def test_sigterm_mid_epoch_then_resume_trains_the_same_batches_once(
        strategy: str, tiny_data: Path, tiny_run: Path, tmp_path: Path) -> None:
    settings = {"data": str(tiny_data), "model": "small_cnn", "epochs": 3, "batch_size": 16, "workers": 0,
                "scheduler": "cosine", "warmup_epochs": 1, "augment": "none", "out": str(tmp_path)}
    if strategy == "staged":  # the signal lands in the head stage, trained on cached features
        settings.update(strategy="staged", head_epochs=2, weights=str(tiny_run / "best.pt"))
    reference = Batches()
    full = train(load_train_config(**settings, name="full"), callbacks=[reference]).path
    before, after = Batches(), Batches()
    with pytest.raises(TrainingTerminated, match="imgcls train --resume"):
        train(load_train_config(**settings, name="cut"), callbacks=[SigtermAt(epoch=1, batch=1), before])
    last = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == 2  # mid-epoch
    resumed = resume(tmp_path / "cut", callbacks=[after]).path
    assert before.seen + after.seen == reference.seen  # nothing redone, nothing left out, the same order
    rows, expected = _rows(resumed), _rows(full)
    assert [epoch for epoch, _ in rows] == [epoch for epoch, _ in expected] == [1, 2, 3]  # one row per epoch
    assert [lr for _, lr in rows] == pytest.approx([lr for _, lr in expected])  # the same schedule


@pytest.mark.slow
def test_sigterm_during_validation_lets_it_finish_so_every_epoch_has_its_val_accuracy(
        tiny_data: Path, tmp_path: Path) -> None:
    settings = {"data": str(tiny_data), "model": "small_cnn", "epochs": 3, "batch_size": 16, "workers": 0,
                "out": str(tmp_path), "name": "val"}
    with pytest.raises(TrainingTerminated):
        train(load_train_config(**settings), callbacks=[SigtermInValidation()])
    rows = json.loads((resume(tmp_path / "val").path / "metrics.json").read_text())["epochs"]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert all(row["val_acc"] is not None for row in rows)


@pytest.mark.slow
def test_a_stop_by_sigterm_leaves_no_loader_worker_behind(tiny_data: Path, tmp_path: Path) -> None:
    # The workers ignore SIGTERM; one left running would hold the exit of the process (and of a notebook's).
    settings = {"data": str(tiny_data), "model": "small_cnn", "epochs": 2, "img_size": 32, "batch_size": 8,
                "workers": 1, "out": str(tmp_path), "name": "workers"}
    with pytest.raises(TrainingTerminated):
        train(load_train_config(**settings), callbacks=[SigtermAt(epoch=1, batch=8)])  # the epoch's last batch
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_sigterm_to_the_process_group_exits_143_and_resume_finishes(tiny_data: Path, tmp_path: Path) -> None:
    process = training_after_one_epoch(tiny_data, tmp_path, "term", epochs=3)
    metrics = tmp_path / "term" / "metrics.json"
    time.sleep(0.5)  # into epoch 2
    os.killpg(process.pid, signal.SIGTERM)  # what a scheduler does: every process of the job, loader workers too
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert time.monotonic() - sent < 10
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "imgcls train --resume" in stderr.splitlines()[-1]
    assert "\r" not in stderr  # a log file's training progress: plain lines
    steps_per_epoch = 72 // 4
    last = torch.load(tmp_path / "term" / "last.pt", weights_only=True)
    assert steps_per_epoch <= last["global_step"] < 3 * steps_per_epoch
    run_cli("train", "--resume", tmp_path / "term", check=True)
    assert [row["epoch"] for row in json.loads(metrics.read_text())["epochs"]] == [1, 2, 3]
    assert torch.load(tmp_path / "term" / "last.pt", weights_only=True)["global_step"] == 3 * steps_per_epoch
