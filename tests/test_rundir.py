"""Which folder is a run, and which run a model path belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcls.errors import RunDirError
from imgcls.rundir import RunDir


def _run(root: Path, *files: str) -> Path:
    root.mkdir(parents=True)
    for name in files:
        (root / name).write_bytes(b"")
    return root


def test_a_run_is_found_from_itself_or_a_file_inside_it(tmp_path: Path) -> None:
    run = _run(tmp_path / "runs" / "a", RunDir.CONFIG, RunDir.BEST)
    assert RunDir.of(run).path == run
    assert RunDir.of(run / RunDir.BEST).path == run
    assert RunDir.of(tmp_path / "elsewhere.onnx") is None
    assert RunDir.of(tmp_path / "runs") is None  # a folder of runs is not a run


def test_open_says_what_a_folder_lacks(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="holds no best.pt or last.pt"):
        RunDir.open(_run(tmp_path / "no-checkpoint", RunDir.CONFIG))
    with pytest.raises(RunDirError, match="holds no config.yaml"):
        RunDir.open(_run(tmp_path / "no-config", RunDir.LAST))
    assert RunDir.open(_run(tmp_path / "ok", RunDir.CONFIG, RunDir.LAST)).best_checkpoint.name == RunDir.LAST
