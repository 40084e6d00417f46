"""Peak memory of folder prediction: 20,000 images stream in about the memory of 2,000.

    python benchmarks/predict_memory.py [--model RUN] [--images 2000 20000] [--size 96]

Generates small JPEGs in a temporary folder, runs ``imgcls predict MODEL DIR --jsonl`` in a fresh
process per folder size (stdout counted, not kept) and reports the process's peak resident memory
(its own and its loader workers', the largest of them) and images per second, start-up included.
``--json`` (one list, kept whole to print it) is measured too for comparison. Without --model a small_cnn
run is trained on a few generated images first, so the figures are about the pipeline, not a network.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
with subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as child:
    lines = sum(1 for _ in child.stdout)
print(lines, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, child.returncode)
"""


def make_images(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """``count`` JPEGs of ``size`` px in two class folders (random blocks, so each file differs)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        cls = folder / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(blocks).resize((size, size), Image.NEAREST).save(cls / f"{i:06d}.jpg", quality=85)


def train_small_run(out: Path) -> Path:
    data = out / "data"
    for split, count in (("train", 64), ("val", 16)):
        make_images(data / split, count, 32, seed=len(split))
    subprocess.run([sys.executable, "-m", "imgcls", "train", str(data), "--model", "small_cnn", "--epochs", "1",
                    "--out", str(out), "--name", "small"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return out / "small"


def measure(model: Path, folder: Path, mode: str) -> dict[str, float]:
    command = [sys.executable, "-m", "imgcls", "predict", str(model), str(folder), mode]
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    lines, seconds, max_rss_kb, code = out.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}")
    return {"lines": int(lines), "seconds": float(seconds), "peak_mb": int(max_rss_kb) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="run directory or model file (default: a small_cnn run)")
    parser.add_argument("--images", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--size", type=int, default=96, help="side of the generated JPEGs in pixels")
    parser.add_argument("--no-json", action="store_true", help="skip the --json comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgcls-predict-memory-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("IMGCLS_CACHE", str(tmp / "cache"))
        model = args.model or train_small_run(tmp / "runs")
        print(f"model {model}; JPEGs of {args.size} px; whole processes, start-up included", file=sys.stderr)
        print(f"{'images':>8}  {'mode':7}  {'peak MB':>8}  {'img/s':>7}  {'seconds':>8}")
        for count in args.images:
            folder = tmp / f"images-{count}"
            make_images(folder, count, args.size, seed=count)
            for mode in ("--jsonl",) + (() if args.no_json else ("--json",)):
                row = measure(model, folder, mode)
                if mode == "--jsonl" and row["lines"] != count:
                    raise SystemExit(f"--jsonl printed {row['lines']} lines for {count} images")
                print(f"{count:8d}  {mode:7}  {row['peak_mb']:8.0f}  {count / row['seconds']:7.1f}  "
                      f"{row['seconds']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
