"""How long the data checks take: doctor on a photo folder, cold and cached, serial and in processes,
next to the baseline of reading only headers and of a plain full decode.

    python benchmarks/doctor_speed.py ../shared/datasets/hymenoptera_data [--workers 4]

Figures are wall-clock seconds and images per second; on a shared machine they are indicative only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from PIL import Image


def _timed(label: str, fn, count: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:<44} {seconds:7.2f} s  {count / seconds:8.0f} img/s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = parser.parse_args()
    os.environ["IMGCLS_CACHE"] = tempfile.mkdtemp(prefix="imgcls-bench-")  # start cold
    from imgcls.data import filecheck
    from imgcls.data.doctor import diagnose
    from imgcls.data.images import is_image_file

    paths = sorted(str(p) for p in args.data.rglob("*") if p.is_file() and is_image_file(p))
    print(f"{len(paths)} image files under {args.data}; {args.workers} workers\n")

    def headers() -> None:
        for path in paths:
            with Image.open(path):
                pass

    def full_decode() -> None:
        for path in paths:
            with Image.open(path) as image:
                image.convert("RGB")

    _timed("baseline: headers only (Image.open)", headers, len(paths))
    _timed("baseline: full decode to RGB, serial", full_decode, len(paths))
    _timed("doctor, cold, serial (decode+hashes)", lambda: diagnose(args.data, workers=1), len(paths))
    filecheck._memory.clear()
    os.environ["IMGCLS_CACHE"] = tempfile.mkdtemp(prefix="imgcls-bench-")
    _timed(f"doctor, cold, {args.workers} processes", lambda: diagnose(args.data, workers=args.workers), len(paths))
    filecheck._memory.clear()
    _timed("doctor, cached on disk (next run, train)", lambda: diagnose(args.data, workers=args.workers), len(paths))


if __name__ == "__main__":
    main()
