"""Ctrl-C leaves a resumable last.pt; --resume continues the same epochs, rows and schedule."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from imgcls.config import load_train_config
from imgcls.errors import TrainingInterrupted
from imgcls.training.fit import resume, train
from tests.helpers import run_cli, training_after_one_epoch


class InterruptAt(pl.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C does) at a batch of an epoch counted over the whole run."""

    def __init__(self, epoch: int, batch: int = 0):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object,
                             batch_idx: int) -> None:
        if pl_module.recipe.epoch_offset + trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise KeyboardInterrupt


def _rows(run: Path) -> list[tuple[int, float]]:
    return [(row["epoch"], row["lr"]) for row in json.loads((run / "metrics.json").read_text())["epochs"]]


def _settings(tiny_data: Path, out: Path, name: str, **options) -> dict:  # noqa: ANN003
    return {"data": str(tiny_data), "model": "small_cnn", "epochs": 3, "batch_size": 16, "workers": 0,
            "scheduler": "cosine", "warmup_epochs": 1, "out": str(out), "name": name, **options}


def _interrupted_then_resumed(settings: dict, interrupt: InterruptAt) -> Path:
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(load_train_config(**settings), callbacks=[interrupt])
    run = Path(settings["out"]) / settings["name"]
    assert (run / "last.pt").is_file()
    return resume(run).path


@pytest.fixture(scope="module")
def uninterrupted(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(load_train_config(**_settings(tiny_data, tmp_path_factory.mktemp("full"), "full"))).path


@pytest.mark.slow
def test_resume_after_an_interrupted_epoch_continues_the_same_rows_and_schedule(
        uninterrupted: Path, tiny_data: Path, tmp_path: Path) -> None:
    resumed = _interrupted_then_resumed(_settings(tiny_data, tmp_path, "cut"), InterruptAt(epoch=1, batch=1))
    rows, expected = _rows(resumed), _rows(uninterrupted)
    assert [epoch for epoch, _ in rows] == [epoch for epoch, _ in expected] == [1, 2, 3]
    assert [lr for _, lr in rows] == pytest.approx([lr for _, lr in expected])  # the same schedule
    assert torch.load(resumed / "last.pt", weights_only=True)["imgcls"]["epoch"] == 3


@pytest.mark.slow
def test_interrupt_before_the_first_epoch_ends_still_leaves_a_resumable_run(
        uninterrupted: Path, tiny_data: Path, tmp_path: Path) -> None:
    resumed = _interrupted_then_resumed(_settings(tiny_data, tmp_path, "early"), InterruptAt(epoch=0, batch=1))
    assert [epoch for epoch, _ in _rows(resumed)] == [1, 2, 3]


@pytest.mark.slow
def test_staged_resumes_in_its_second_stage(tiny_data: Path, tiny_run: Path, tmp_path: Path) -> None:
    settings = _settings(tiny_data, tmp_path, "staged", strategy="staged", head_epochs=1,
                         weights=str(tiny_run / "best.pt"))
    resumed = _interrupted_then_resumed(settings, InterruptAt(epoch=2))  # in stage 2, after one epoch of it
    rows = _rows(resumed)
    assert [epoch for epoch, _ in rows] == [1, 2, 3]
    assert rows[1][1] < rows[0][1] * 0.5 and rows[2][1] < rows[0][1] * 0.5  # stage 2's lower rate, resumed too
    last = torch.load(resumed / "last.pt", weights_only=True)
    assert last["imgcls"]["stage"] == 1 and last["imgcls"]["epoch"] == 3


@pytest.mark.slow
def test_ctrl_c_exits_130_with_a_resume_hint_and_resume_finishes(tiny_data: Path, tmp_path: Path) -> None:
    process = training_after_one_epoch(tiny_data, tmp_path, "sig", epochs=5)
    metrics = tmp_path / "sig" / "metrics.json"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, stderr = process.communicate(timeout=300)
    if process.returncode == 0:
        pytest.skip("training finished before the interrupt arrived")
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "imgcls train --resume" in stderr.splitlines()[-1]
    done = len(json.loads(metrics.read_text())["epochs"])
    assert done < 5
    result = run_cli("train", "--resume", tmp_path / "sig", check=True)
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "sig")
    assert [row["epoch"] for row in json.loads(metrics.read_text())["epochs"]] == list(range(1, 6))
