"""Functions the tests share: generated image folders, the CLI run as a subprocess or in this process,
and the example scripts of examples/ loaded as plain namespaces (never as importable modules)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle
import runpy
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
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


def write_cifar_batches(folder: Path, per_batch: int = 20) -> None:
    """CIFAR-10 in its python-batches form: two train batches and a test batch of random pixels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(i % 10) for i in range(per_batch)], b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))


def run_cli(*args: str, check: bool = False, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``imgcls`` entry point (as ``python -m imgcls``) and capture its output."""
    result = subprocess.run([sys.executable, "-m", "imgcls", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"imgcls {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def training_after_one_epoch(data: Path, out: Path, name: str, epochs: int) -> subprocess.Popen:
    """``imgcls train`` of small_cnn in a session of its own (a job's process group), returned once its first
    epoch is recorded, for a signal to reach it mid-run."""
    command = [sys.executable, "-m", "imgcls", "train", str(data), "--model", "small_cnn", "--epochs", str(epochs),
               "--img-size", "32", "--batch-size", "4", "--workers", "1", "--out", str(out), "--name", name]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    metrics, deadline = out / name / "metrics.json", time.monotonic() + 300
    while not metrics.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


def run_main(*argv: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``imgcls ARGV`` through the CLI entry point, in this process."""
    from imgcls.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["imgcls", *map(str, argv)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue()


@functools.cache
def messy_example() -> SimpleNamespace:
    """examples/make_messy_data.py's names (make_messy, BROKEN, ODD, bomb_png...), run once."""
    return SimpleNamespace(**runpy.run_path(str(REPO / "examples" / "make_messy_data.py")))


def save_tiny_vit(folder: Path, labels: int = 5) -> Path:
    """A 2-layer ViT for 32-pixel images, saved the way transformers users save models."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=labels)
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3],
                      resample=3).save_pretrained(folder)
    return folder
