"""The messy folder of examples/make_messy_data.py, built once per session from the ants/bees photos."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_messy_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("examples_messy", REPO / "examples" / "make_messy_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["examples_messy"] = module  # test_images imports bomb_png from it
    spec.loader.exec_module(module)
    return module


messy_module = _load_messy_module()


@pytest.fixture(scope="session")
def messy(tmp_path_factory: pytest.TempPathFactory, ants_bees: Path) -> Path:
    return messy_module.make_messy(ants_bees, tmp_path_factory.mktemp("messy") / "사진")
