"""The messy folder of examples/make_messy_data.py, built once per session from the ants/bees photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import messy_example


@pytest.fixture(scope="session")
def messy(tmp_path_factory: pytest.TempPathFactory, ants_bees: Path) -> Path:
    return messy_example().make_messy(ants_bees, tmp_path_factory.mktemp("messy") / "사진")
