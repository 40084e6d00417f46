"""A messy photo folder, as a new user would try it: build the messy folder, then doctor, train, predict.

    python examples/messy_walkthrough.py [--epochs 4] [--work /tmp/messy-demo]

Checks: doctor names every broken file, the leaks and the empty class; train skips and names the
broken files and reaches val accuracy >= 0.85 (efficientnet_lite0, feature extraction); predict reads
every odd-but-valid image. Prints each command's outcome; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_messy_data as messy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def imgcls(*args: str) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "imgcls", *map(str, args)], capture_output=True, text=True)
    print(f"$ imgcls {' '.join(map(str, args))}  -> exit {result.returncode}, {time.perf_counter() - start:.0f} s")
    return result


def check(ok: bool, what: str) -> bool:
    print(f"  [{'ok' if ok else 'FAILED'}] {what}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="messy-demo-")))
    args = parser.parse_args()
    data = messy.make_messy(REPO / "examples" / "ants_bees", args.work / "사진")
    results = []

    doctor = imgcls("doctor", data, "--json")
    report = json.loads(doctor.stdout)
    named = {(unicodedata.normalize("NFC", str(Path(p["path"]).relative_to(data))), p["kind"]) for p in report["problems"]}
    results.append(check(all((p, k) in named for p, k in messy.BROKEN.items()), "doctor names every broken file"))
    results.append(check(all((p, k) in named for p, k in messy.LEAKS.items()), "doctor names both leaks"))
    results.append(check((f"train/{messy.EMPTY}", "empty-class") in named, "doctor names the empty class"))

    train = imgcls("train", data, "--epochs", args.epochs, "--out", args.work / "runs")
    log = unicodedata.normalize("NFC", train.stderr)
    results.append(check(all(f"skipped {unicodedata.normalize('NFC', str(data / p))}" in log for p in messy.BROKEN),
                         "train skips and names every broken file"))
    run = Path(train.stdout.strip().splitlines()[-1]) if train.returncode == 0 else None
    accuracy = json.loads((run / "metrics.json").read_text())["best_val_acc"] if run else 0.0
    results.append(check(accuracy >= 0.85, f"train reaches val accuracy {accuracy:.3f} (>= 0.85)"))

    predict = imgcls("predict", run or data, data / "odd", "--json")
    read = {Path(r["path"]).name for r in json.loads(predict.stdout or "[]")}
    results.append(check(read == set(messy.ODD), f"predict reads all {len(messy.ODD)} odd-but-valid images"))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
