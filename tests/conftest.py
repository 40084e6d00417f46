"""Shared fixtures: small generated image folders and one tiny trained run per test session (the functions
that make them are in tests/helpers.py).

Everything runs offline and small: 32-pixel synthetic images and the scratch ``small_cnn`` for
most tests; the bundled ants/bees photos (examples/ants_bees) where real photos matter.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ANTS_BEES, make_train_val


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Caches of this test session live in a temporary folder, never in ~/.cache."""
    path = tmp_path_factory.mktemp("imgcls-cache")
    os.environ["IMGCLS_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and val/ trees of 3 classes (stripes_h, stripes_v, checker), 24 + 8 images each, 32 px."""
    return make_train_val(tmp_path_factory.mktemp("tiny"), ["checker", "stripes_h", "stripes_v"])


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of small_cnn trained from scratch on ``tiny_data`` (a few seconds)."""
    from imgcls.config import load_train_config
    from imgcls.training.fit import train

    out = tmp_path_factory.mktemp("runs")
    config = load_train_config(data=str(tiny_data), model="small_cnn", epochs=6, batch_size=16, lr=3e-3,
                               workers=0, out=str(out), name="tiny")
    return train(config).path


@pytest.fixture(scope="session")
def ants_bees() -> Path:
    return ANTS_BEES


@pytest.fixture(scope="session")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet-layout weights of timm's test_resnet (random): what --weights PATH fine-tunes from, offline."""
    import timm
    import torch

    path = tmp_path_factory.mktemp("weights") / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    return path
