"""Checkpoints never run code when loaded, and a kill while writing last.pt never leaves a broken file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imgcls.errors import CheckpointError, ModelError
from imgcls.models.checkpoint import load_checkpoint, read_checkpoint_file
from imgcls.models.weights import read_state_dict
from imgcls.training.callbacks import AtomicCheckpointIO


class _Booby:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("loader,error", [(read_checkpoint_file, CheckpointError), (read_state_dict, ModelError)])
def test_booby_trapped_pickle_is_refused_and_never_runs(tmp_path, loader, error):
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.pt"
    torch.save({"imgcls": {"format": "imgcls"}, "state_dict": {"w": _Booby(marker)}}, path)
    with pytest.raises(error, match="would call posix.system"):
        loader(path)
    assert not marker.exists()


def test_a_run_checkpoint_loads_with_weights_only(tiny_run):
    loaded = load_checkpoint(tiny_run / "best.pt")
    assert loaded.classes == ["checker", "stripes_h", "stripes_v"]
    assert isinstance(loaded.build(), torch.nn.Module)


def test_damaged_metadata_is_a_checkpoint_error(tmp_path, tiny_run):
    checkpoint = torch.load(tiny_run / "best.pt", weights_only=True)
    checkpoint["imgcls"]["model"]["arch"] = "no_such_net"
    torch.save(checkpoint, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="no_such_net"):
        load_checkpoint(tmp_path / "odd.pt").build()
    checkpoint["imgcls"]["version"] = "one"
    torch.save(checkpoint, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="metadata is damaged"):
        read_checkpoint_file(tmp_path / "odd.pt")


def test_failed_write_leaves_the_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def crash(src, dst):  # noqa: ANN001, ANN202 - the moment between writing the temp file and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


KILLED_WRITER = """
import sys, torch
from pathlib import Path
from imgcls.training.callbacks import AtomicCheckpointIO
path, big = Path(sys.argv[1]), torch.randn(8_000_000)
for epoch in range(2, 10_000):
    AtomicCheckpointIO().save_checkpoint({"epoch": epoch, "w": big}, path)
    print(epoch, flush=True)
"""


@pytest.mark.slow
def test_kill_during_writes_leaves_a_complete_last_pt(tmp_path):
    path = tmp_path / "last.pt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1, "w": torch.zeros(1)}, path)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    writer.stdout.readline()  # at least one rewrite has finished; the next is under way
    time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert torch.load(path, weights_only=True)["epoch"] >= 2  # complete, whichever epoch it holds
