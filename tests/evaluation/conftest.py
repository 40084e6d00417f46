"""Fixtures of the evaluation tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import run_main


@pytest.fixture
def imgcls_main() -> Callable[..., tuple[int, str, str]]:
    """Runs the CLI in this process: ``imgcls_main("evaluate", run) -> (exit code, stdout, stderr)``.
    The real executable is exercised once per command family (and in tests/test_cli.py); in-process is faster."""
    return run_main
