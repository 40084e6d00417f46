"""From scratch on tiny grayscale digits: small_cnn on a generated MNIST-like set of all ten digits.

    python benchmarks/train_digits.py [--train 200] [--val 50] [--epochs 10]

Digits 0-9 are rendered with matplotlib's DejaVu fonts (tests/training/digits.py), shifted, rotated,
scaled and noised, as 28 px grayscale PNGs; `imgcls train --model small_cnn --strategy scratch` learns
them with its scratch defaults (mean/std 0.5, img size from the data) plus --augment none --no-hflip
(a mirrored digit is no digit). The goal is best_val_acc >= 0.95. Prints the wall time and accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.training.digits import make_digits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200, help="training images per digit")
    parser.add_argument("--val", type=int, default=50, help="validation images per digit")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_digits(Path(tmp) / "digits", train=args.train, val=args.val)
        command = [sys.executable, "-m", "imgcls", "train", str(data), "--model", "small_cnn", "--strategy",
                   "scratch", "--epochs", str(args.epochs), "--augment", "none", "--no-hflip", "--out", tmp,
                   "--name", "run"]
        start = time.perf_counter()
        stdout = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        seconds = time.perf_counter() - start
        metrics = json.loads((Path(stdout.strip().splitlines()[-1]) / "metrics.json").read_text())
    verdict = "meets" if metrics["best_val_acc"] >= 0.95 else "MISSES"
    print(f"small_cnn scratch, 10 digits x {args.train} train / {args.val} val, {args.epochs} epochs: "
          f"{seconds:.1f} s, best_val_acc {metrics['best_val_acc']:.4f} ({verdict} the 0.95 goal)")


if __name__ == "__main__":
    main()
