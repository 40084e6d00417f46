"""A full, read-only or forbidden disk: one line naming the file and the fix, and nothing already
written becomes invalid (no half-written checkpoint, cache entry, picture or export)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from imgcls.config import load_train_config
from imgcls.errors import ImgclsError, StorageError, storage_error
from imgcls.evaluation import plots
from imgcls.rundir import atomic_write_bytes
from imgcls.training import features
from imgcls.training.fit import train
from tests.helpers import run_cli


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201 - yields a mount point
    """A real 2.5 MB filesystem: room for one epoch's best.pt and last.pt of small_cnn, not a second."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2500k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_training_onto_a_full_disk_ends_with_one_line_and_every_checkpoint_loads(
        tiny_data: Path, small_disk: Path) -> None:
    result = run_cli("train", tiny_data, "--model", "small_cnn", "--epochs", "4", "--batch-size", "16",
                     "--workers", "0", "--out", small_disk, "--name", "full")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "no space left on device" in line and str(small_disk / "full") in line and "--out" in line
    left = list((small_disk / "full").glob("*.pt"))
    assert {p.name for p in left} == {"best.pt", "last.pt"}  # the previous epoch's files, intact
    for checkpoint in left:
        assert torch.load(checkpoint, weights_only=True)["imgcls"]["epoch"] >= 1
    assert not list((small_disk / "full").glob(".*.tmp"))


def test_a_read_only_out_folder_is_one_error_naming_it(tiny_data: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(ImgclsError, match="(?i)read-only.*--out") as raised:
            train(load_train_config(data=str(tiny_data), model="small_cnn", epochs=1, workers=0, out=str(mount)))
        assert str(mount) in str(raised.value)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_refused_write_keeps_the_previous_file_and_names_the_path(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"previous")
    monkeypatch.setattr("imgcls.rundir.os.replace", _no_space)
    with pytest.raises(StorageError, match=f"no space left on device writing {target}; free space or use --out"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_permission_and_read_only_errors_say_so_with_the_fix(tmp_path: Path) -> None:
    denied = storage_error(PermissionError(errno.EACCES, "Permission denied"), tmp_path / "report.html")
    assert str(denied) == f"permission denied writing {tmp_path / 'report.html'}; use --out on another disk"
    assert denied.exit_code == 2
    assert "read-only file system" in str(storage_error(OSError(errno.EROFS, "Read-only file system", "x.png")))
    assert storage_error(OSError(errno.ENOENT, "No such file")) is None  # not a disk refusal


def test_a_cache_entry_that_cannot_be_written_is_never_read_back(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    entry = tmp_path / "cache" / "features" / "entry.pt"
    monkeypatch.setattr("imgcls.rundir.os.replace", _no_space)
    features._save(entry, features.FeatureSet(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)))
    assert features._load(entry) is None  # extracted again, never half an entry
    assert not entry.parent.exists() or not any(entry.parent.iterdir())


def test_a_picture_on_a_full_disk_is_one_error_and_no_partial_file(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setattr("imgcls.rundir.os.replace", _no_space)
    figure, _ = plt.subplots()
    with pytest.raises(StorageError, match="curves.png"):
        plots._save(figure, tmp_path / "curves.png", "")
    assert not list(tmp_path.iterdir())


def test_export_onto_a_full_disk_is_one_line_naming_the_file(tiny_run: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("imgcls.export.exporter._write_and_verify", _no_space)
    from imgcls.export.exporter import export_model

    with pytest.raises(StorageError, match=f"no space left on device writing {tmp_path / 'model.onnx'}"):
        export_model(tiny_run, "onnx", out=tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())
