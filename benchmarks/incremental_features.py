"""What adding photos costs feature extraction, now that embeddings are cached per file.

    python benchmarks/incremental_features.py [--data ../shared/datasets/hymenoptera_data] [--add 20]

Three whole ``imgcls train DATA --strategy feature-extraction --epochs 1`` processes on the full-size
photos, one cache: cold (all photos but ``--add`` of them, empty cache), the same again (nothing changed),
then with the held-out photos added. The work that grows with the data is what each run spends beyond the
no-change rerun; with per-file entries, adding 20 photos to 378 should cost a small share of the cold
run's (the aim: at most a quarter).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgcls.data.images import is_image_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "hymenoptera_data"


def link_tree(src: Path, dst: Path, hold_out: int) -> list[tuple[Path, Path]]:
    """Hard links of every image of ``src`` in ``dst`` but ``hold_out`` train photos (spread over the classes),
    returned as (source, destination) pairs to add later."""
    photos = sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p))
    train = [p for p in photos if p.relative_to(src).parts[0] == "train"]
    step = max(1, len(train) // max(hold_out, 1))
    held = set(train[::step][:hold_out])
    for photo in photos:
        if photo not in held:
            target = dst / photo.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(photo, target)
    return [(p, dst / p.relative_to(src)) for p in sorted(held)]


def train_once(data: Path, out: Path, name: str, model: str) -> tuple[float, float, str]:
    """(whole-process seconds, seconds spent extracting as the log says, what came from the cache)."""
    command = [sys.executable, "-m", "imgcls", "train", str(data), "--model", model, "--strategy",
               "feature-extraction", "--epochs", "1", "--out", str(out), "--name", name]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    found = re.findall(r"(features [^:]+): (\d+) images from the cache(?:, (\d+) extracted in ([\d.]+) s)?",
                       result.stderr)
    extracting = sum(float(s or 0) for *_, s in found)
    return seconds, extracting, "; ".join(f"{what} {n} cached + {new or 0} new" for what, n, new, _ in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="train/ and val/ class folders")
    parser.add_argument("--add", type=int, default=20, help="photos held out of the first runs, then added")
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        raise SystemExit(f"{args.data} has no train/ folder; give --data DIR")
    with tempfile.TemporaryDirectory(prefix="imgcls-incremental-") as tmp:
        tmp = Path(tmp)
        os.environ["IMGCLS_CACHE"] = str(tmp / "cache")
        data = tmp / "data"
        held = link_tree(args.data, data, args.add)
        total = sum(1 for p in data.rglob("*") if p.is_file() and is_image_file(p))
        runs = tmp / "runs"
        rows = [("cold cache", total, *train_once(data, runs, "cold", args.model))]
        rows += [("no change", total, *train_once(data, runs, f"again{i}", args.model)) for i in range(2)]
        for source, target in held:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
        rows.append((f"+{len(held)} photos", total + len(held), *train_once(data, runs, "added", args.model)))
        rows.append(("no change", total + len(held), *train_once(data, runs, "after", args.model)))
    rerun = min(seconds for name, _, seconds, _, _ in rows if name == "no change")
    print(f"whole processes, one after another; 'beyond rerun': minus the fastest no-change rerun ({rerun:.1f} s)")
    print(f"{'run':14}  {'photos':>6}  {'seconds':>8}  {'beyond rerun':>12}  {'extracting':>10}  from the cache")
    for name, photos, seconds, extracting, detail in rows:
        print(f"{name:14}  {photos:6d}  {seconds:8.1f}  {seconds - rerun:12.1f}  {extracting:9.1f}s  {detail}")
    cold, added = rows[0], rows[3]
    share = (added[2] - rerun) / (cold[2] - rerun)
    print(f"adding {len(held)} photos cost {added[2] - rerun:.1f} s beyond a no-change rerun, {share:.1%} of the "
          f"cold run's {cold[2] - rerun:.1f} s (aim: at most 25%); extraction alone {added[3]:.1f} s vs "
          f"{cold[3]:.1f} s ({added[3] / cold[3]:.1%})")


if __name__ == "__main__":
    main()
