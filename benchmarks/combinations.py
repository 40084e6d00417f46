"""The wider pairwise option matrix: strategy x --cache on/off x precision (32, bf16-mixed) x lr-find x EMA
x Mixup/CutMix x balance, every pair of values of any two options in some run (too slow for `make test`).

    python benchmarks/combinations.py [--size 48]

Tiny generated images (larger than the 32 px input, so the decoded cache holds real crops); prints each
case with its time and PASS/FAIL, and the failures' last line. Exits 1 when any case fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.helpers import make_train_val  # noqa: E402
from tests.training.test_combinations import WIDER, pairwise, train_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48, help="image side in pixels")
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        images = make_train_val(Path(tmp) / "data", ["checker", "stripes_h"], train=8, val=4, size=args.size)
        for index, case in enumerate(pairwise(WIDER)):
            start = time.perf_counter()
            try:
                train_case(case, images, Path(tmp) / f"runs{index}")
                verdict = "PASS"
            except Exception as exc:  # noqa: BLE001 - report every case, then fail
                failures += 1
                verdict = f"FAIL {type(exc).__name__}: {exc}".splitlines()[0]
                traceback.print_exc()
            print(f"{time.perf_counter() - start:6.1f} s  {verdict}  {case}", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
