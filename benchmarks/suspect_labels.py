"""Suspect labels: move N training photos into the wrong class folder, then count how many of them
``imgcls doctor --labels`` ranks among its first 1.5 N suspects.

    python benchmarks/suspect_labels.py [PHOTOS] [--moved 16] [--seeds 0 1 2] [--rank-by self_confidence]

PHOTOS is a folder with train/ (default: the full-size ants/bees photos); its train/ is copied to a
temporary folder, so the original stays as it is.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from imgcls.data.folders import class_dirs, class_files  # noqa: E402
from imgcls.training.label_issues import find_suspect_labels  # noqa: E402

DEFAULT_PHOTOS = REPO.parent / "shared" / "datasets" / "hymenoptera_data"


def mislabel(train: Path, out: Path, moved: int, seed: int) -> set[str]:
    """Copy ``train`` to ``out``, moving ``moved`` files (spread over the classes) into another class's
    folder; returns the moved files' new paths."""
    shutil.copytree(train, out)
    rng = random.Random(seed)
    classes = class_dirs(out)
    names = sorted(classes)
    files = {name: sorted(class_files(classes[name])[0]) for name in names}
    wrong = set()
    for i in range(moved):
        name = names[i % len(names)]
        path = Path(files[name].pop(rng.randrange(len(files[name]))))
        target = rng.choice([n for n in names if n != name])
        new = classes[target] / f"moved-from-{name}-{path.name}"
        path.rename(new)
        wrong.add(str(new))
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--moved", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rank-by", default="self_confidence")
    parser.add_argument("--model", default=None, help="a run whose backbone embeds the images")
    args = parser.parse_args()
    shown = args.moved * 3 // 2
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            wrong = mislabel(args.photos / "train", Path(tmp) / "train", args.moved, seed)
            start = time.perf_counter()
            found = find_suspect_labels(tmp, args.model, rank_by=args.rank_by)
            seconds = time.perf_counter() - start
            hits = sum(s.path in wrong for s in found[:shown])
            print(f"seed {seed}: {hits} of {args.moved} moved files among the first {shown} suspects "
                  f"({len(found)} flagged, {sum(s.path in wrong for s in found)} of them moved; {seconds:.1f} s, "
                  f"rank by {args.rank_by})", flush=True)


if __name__ == "__main__":
    main()
