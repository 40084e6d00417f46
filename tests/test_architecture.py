"""The layers of docs/architecture.md hold: no module imports a layer above its own, and no package's
modules import each other in a circle (import-linter's contracts in pyproject.toml)."""

from __future__ import annotations

import pytest

from tests.helpers import REPO

lint = pytest.importorskip("importlinter.application.use_cases", reason="import-linter is in the dev extra")


def test_imports_follow_the_layers(capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter.configuration import configure

    configure()  # what the lint-imports command does first: the readers of pyproject.toml
    passed = lint.lint_imports(config_filename=str(REPO / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert passed == lint.SUCCESS, capsys.readouterr().out
