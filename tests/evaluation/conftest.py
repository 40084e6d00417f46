"""Fixtures of the evaluation tests."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from imgcls.cli import main


@pytest.fixture
def imgcls_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                ) -> Callable[..., tuple[int, str, str]]:
    """Runs the CLI in this process: ``imgcls_main("evaluate", run) -> (exit code, stdout, stderr)``.
    The real executable is exercised once per command family (and in tests/test_cli.py); in-process is faster."""

    def run(*args: object) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["imgcls", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
            raise SystemExit(0)
        captured = capsys.readouterr()
        return int(exit_info.value.code or 0), captured.out, captured.err

    return run
