"""Progress in a log file: plain lines now and then, never a carriage return."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from imgcls.progress import Progress
from tests.helpers import make_train_val, run_cli


def test_progress_off_a_terminal_is_a_few_plain_lines(caplog: pytest.LogCaptureFixture,
                                                       capsys: pytest.CaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="imgcls.progress"):
        progress = Progress("checking", 1000)
        for _ in range(1000):
            progress.update()
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= 11 and lines[-1].startswith("checking: 1000/1000 img (100%")
    assert "\r" not in capsys.readouterr().err


def test_small_jobs_show_no_progress(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="imgcls.progress"):
        progress = Progress("checking")
        for done in range(1, 11):
            progress(done, 10)
    assert not caplog.records


@pytest.mark.slow
def test_doctor_predict_and_evaluate_logs_hold_no_carriage_returns(tiny_run: Path, tmp_path: Path) -> None:
    data = make_train_val(tmp_path / "data", ["checker", "stripes_h", "stripes_v"], train=2, val=24)
    for command in (("doctor", data), ("predict", tiny_run, data / "val"),
                    ("evaluate", tiny_run, "--data", data, "--out", tmp_path / "eval")):
        result = run_cli(*command)  # stderr is a pipe, as in a log file
        assert result.returncode == 0, result.stderr
        assert "\r" not in result.stderr
        assert re.search(r"\d+/\d+ img \(100%", result.stderr), result.stderr  # the plain lines are there
