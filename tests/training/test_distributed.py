"""Data-parallel training: two CPU processes (DDP with gloo) write one run, and ranks agree on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgcls.training import distributed

LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
                 "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", distributed.RUN_DIR_ENV,
                 distributed.DEVICES_ENV)

pytestmark = pytest.mark.slow  # two training processes


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCHER_VARS:  # set-then-delete: whatever the code under test sets is undone afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(scope="module")
def two_process_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("ddp-runs")
    # Lightning's launcher re-runs this very command for rank 1, as it would a user's.
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    args = ["train", tiny_data, "--model", "small_cnn", "--epochs", "2", "--devices", "2", "--workers", "0",
            "--batch-size", "16", "--out", out, "--name", "ddp"]
    result = subprocess.run([sys.executable, "-m", "imgcls", *map(str, args)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return out, result


def test_two_processes_write_one_run_with_a_row_per_epoch(two_process_run: tuple[Path, object]) -> None:
    out, result = two_process_run
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["ddp"]  # rank 1 did not create ddp-2
    assert not list(out.glob(".imgcls-launch-*"))
    metrics = json.loads((out / "ddp" / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert all(row["val_acc"] is not None and row["train_loss"] is not None for row in metrics["epochs"])
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == str(out / "ddp") and lines.count(str(out / "ddp")) == 1  # printed once, by rank 0
    assert "distributed: 2 processes" in result.stderr
    # channels_last is set before DDP lays out its gradient buckets, or every step copies the gradients
    assert "Grad strides do not match bucket view strides" not in result.stderr


def test_best_checkpoint_of_a_distributed_run_loads_and_predicts(two_process_run: tuple[Path, object],
                                                                 tiny_data: Path) -> None:
    from imgcls import Classifier

    out, _ = two_process_run
    classifier = Classifier.load(out / "ddp" / "best.pt")
    predictions = classifier.predict(tiny_data / "val" / "checker")
    assert len(predictions) == 8 and {p["label"] for p in predictions} <= set(classifier.classes)


def test_global_rank_from_each_launcher(clean_env: pytest.MonkeyPatch) -> None:
    assert distributed.global_rank() == 0
    clean_env.setenv(distributed.DEVICES_ENV, "4")
    clean_env.setenv("NODE_RANK", "1")
    clean_env.setenv("LOCAL_RANK", "2")
    assert distributed.global_rank() == 6  # Lightning's launcher on the second node
    clean_env.setenv("SLURM_PROCID", "5")
    assert distributed.global_rank() == 5
    clean_env.setenv("RANK", "3")  # torchrun
    assert distributed.global_rank() == 3


def test_ranks_started_together_share_the_run_rank_zero_creates(clean_env: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    clean_env.setenv("TORCHELASTIC_RUN_ID", "job-1")
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("RANK", "0")
    (tmp_path / "exp").mkdir()  # taken: rank 0 picks exp-2, and rank 1 must follow it there
    run = distributed.create_run_dir(tmp_path, "exp", devices=2)
    assert run.path.name == "exp-2"
    clean_env.setenv("RANK", "1")
    clean_env.delenv(distributed.RUN_DIR_ENV)
    assert distributed.create_run_dir(tmp_path, "exp", devices=2).path == run.path.resolve()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["exp", "exp-2"]
    clean_env.setenv("RANK", "0")
    distributed.finish_launch(tmp_path, "exp")
    assert not list(tmp_path.glob(".imgcls-launch-*"))


def test_a_marker_left_by_an_earlier_launch_is_not_followed(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from imgcls.errors import ConfigError

    marker = tmp_path / ".imgcls-launch-old"
    marker.write_text(str(tmp_path / "old-run"))
    stale = time.time() - 3600
    os.utime(marker, (stale, stale))
    with pytest.raises(ConfigError, match="shared --out"):
        distributed.wait_for_marker(marker, timeout=0.5)


def test_one_process_is_not_distributed(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert distributed.trainer_strategy(1) == "auto"
    assert distributed.trainer_strategy(2) == "ddp"
    run = distributed.create_run_dir(tmp_path, "solo")
    assert run.path == tmp_path / "solo" and distributed.RUN_DIR_ENV not in os.environ
