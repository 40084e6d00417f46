"""Process-wide tuning belongs to the process's owner: the imgcls command applies it, a library import does not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imgcls.runtime import tune_process
from tests.helpers import run_main


def test_importing_imgcls_changes_no_process_setting() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "IMGCLS_NO_TUNING")}
    script = "import os, imgcls; print(os.environ.get('OMP_WAIT_POLICY'))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "None"


def test_tune_process_asks_for_passive_openmp_and_keeps_a_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGCLS_NO_TUNING", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    tune_process()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    tune_process()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_command_tunes_its_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGCLS_NO_TUNING", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    code, _, _ = run_main("models", "small_cnn", "--json")
    assert code == 0 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
