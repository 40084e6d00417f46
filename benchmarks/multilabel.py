"""Multi-label training against one binary model per class, side by side, on the composed data set.

    python benchmarks/multilabel.py [--work DIR] [--size 160] [--train 300] [--val 100] [--test 150]

Builds examples/make_multilabel.py's data set (1-3 of ant, bee, circle, square, triangle per canvas), trains
``imgcls train DATA`` with zero flags (one multi-label model: sigmoid/BCE, thresholds chosen on val), then,
for each class, the same zero-flag training on a yes/no class-folder copy of the same images (hard links).
Every model is scored on the test split, which neither training nor threshold choice has seen: F1 per
class, their mean (macro F1) and the multi-label model's AP. The binary models answer by their argmax.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _maker():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("make_multilabel", REPO / "examples" / "make_multilabel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(csv_path: Path) -> list[tuple[str, set[str]]]:
    import csv

    with open(csv_path, encoding="utf-8") as handle:
        return [(row[0], set(row[1].split())) for row in list(csv.reader(handle))[1:]]


def binary_copy(data: Path, name: str, out: Path) -> Path:
    """out/<split>/<name>/ and out/<split>/not_<name>/: the same images, linked, as a yes/no class-folder tree."""
    for split in ("train", "val", "test"):
        for image, labels in _rows(data / split / "labels.csv"):
            folder = out / split / (name if name in labels else f"not_{name}")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / image
            if not target.exists():
                try:
                    os.link(data / split / image, target)
                except OSError:
                    shutil.copy2(data / split / image, target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/imgcls-multilabel-bench")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--test", type=int, default=150)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from imgcls import Classifier

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    maker = _maker()
    data = maker.make_multilabel(work / "data", args.size, args.train, args.val, args.test)
    print(f"data: {data} ({args.train} train / {args.val} val / {args.test} test canvases, {args.size} px)")

    started = time.perf_counter()
    multi = Classifier.train(data, out=str(work / "runs"), name="multilabel")
    multi_seconds = time.perf_counter() - started
    multi_test = multi.evaluate(split="test")

    binary: dict[str, dict] = {}
    binary_seconds = 0.0
    for name in maker.CLASSES:
        tree = binary_copy(data, name, work / f"binary-{name}")
        started = time.perf_counter()
        model = Classifier.train(tree, out=str(work / "runs"), name=f"binary-{name}")
        binary_seconds += time.perf_counter() - started
        binary[name] = model.evaluate(split="test")["per_class"][name]

    print(f"\ntest split, {args.test} images (never used for training or thresholds)")
    print(f"{'class':10} {'multi-label F1':>15} {'AP':>6} {'threshold':>9} {'binary F1':>10}")
    for name in maker.CLASSES:
        m = multi_test["per_class"][name]
        print(f"{name:10} {m['f1']:15.3f} {m['ap']:6.3f} {m['threshold']:9.3f} {binary[name]['f1']:10.3f}")
    binary_macro = sum(v["f1"] for v in binary.values()) / len(binary)
    print(f"{'macro F1':10} {multi_test['macro_f1']:15.3f} {'':6} {'':9} {binary_macro:10.3f}")
    print(f"multi-label: mAP {multi_test['mAP']:.3f}, micro F1 {multi_test['micro_f1']:.3f}, macro F1 at 0.5 "
          f"{multi_test['macro_f1_at_0.5']:.3f}, exact match {multi_test['accuracy']:.3f}")
    print(f"training time: multi-label {multi_seconds:.0f} s (one model), binary {binary_seconds:.0f} s "
          f"({len(binary)} models)")
    gap = 100 * (binary_macro - multi_test["macro_f1"])
    print(f"macro F1 gap (binary - multi-label): {gap:+.1f} points -> "
          + ("within 5 points" if gap <= 5 else "MORE than 5 points behind"))


if __name__ == "__main__":
    main()
