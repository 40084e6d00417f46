"""Shared fixtures: small generated image folders and one tiny trained run per test session.

Everything runs offline and small: 32-pixel synthetic images and the scratch ``small_cnn`` for
most tests; the bundled ants/bees photos (examples/ants_bees) where real photos matter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ANTS_BEES = REPO / "examples" / "ants_bees"


def pattern_image(label: int, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """An easy-to-learn picture: class 0 horizontal stripes, 1 vertical, 2 checkerboard; random colours."""
    y, x = np.mgrid[0:size, 0:size]
    period = int(rng.integers(3, 6))
    masks = [(y // period) % 2, (x // period) % 2, ((x // period) + (y // period)) % 2]
    mask = masks[label % 3].astype(bool)
    fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    while np.abs(fg.astype(int) - bg).sum() < 200:
        fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    array = np.where(mask[..., None], fg, bg).astype(np.float64)
    array += rng.normal(0, 12, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def make_class_tree(root: Path, classes: list[str], per_class: int, seed: int = 0, size: int = 32,
                    start: int = 0) -> Path:
    """root/<class>/<n>.png with pattern images; returns root."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pattern_image(label, rng, size).save(folder / f"{start + i:04d}.png")
    return root


def make_train_val(root: Path, classes: list[str], train: int = 24, val: int = 8, seed: int = 0,
                   size: int = 32) -> Path:
    make_class_tree(root / "train", classes, train, seed, size)
    make_class_tree(root / "val", classes, val, seed + 1, size)
    return root


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


def run_cli(*args: str, check: bool = False, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``imgcls`` entry point (as ``python -m imgcls``) and capture its output."""
    result = subprocess.run([sys.executable, "-m", "imgcls", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"imgcls {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result
