"""The wide pairwise option matrix, too slow for `make test`: strategy x model (timm, hf:, scratch nets) x
--devices 1/2 x --cache on/off x precision (32, bf16-mixed) x lr-find x EMA x Mixup/CutMix x balance --
every pair of values of any two options in some run, each run the real `imgcls train` command.

    python benchmarks/combinations.py [--photos DIR] [--per-class 8]

The images are full-size photos (a few per class from ../shared/datasets/hymenoptera_data, else the
bundled examples/ants_bees), trained at 32 px so that a case takes seconds (bf16 is emulated on CPUs
without bfloat16 instructions) while the decoded cache still holds crops of real large JPEGs. Prints each case with its time and PASS/FAIL, and the failures' last line.
Exits 1 when any case fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import save_tiny_vit  # noqa: E402
from tests.training.test_combinations import WIDER, pairwise, wider_allowed  # noqa: E402

FULL_SIZE = REPO.parent / "shared" / "datasets" / "hymenoptera_data"


def sample_photos(source: Path, out: Path, per_class: int) -> Path:
    for split, count in (("train", per_class), ("val", max(2, per_class // 2))):
        for folder in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            (out / split / folder.name).mkdir(parents=True)
            for path in sorted(folder.glob("*.jp*g"))[:count]:
                shutil.copy(path, out / split / folder.name / path.name)
    return out


def arguments(case: dict[str, object], data: Path, vit: Path, out: Path) -> list[str]:
    model = f"hf:{vit}" if case["model"] == "hf" else str(case["model"])
    args = ["train", str(data), "--model", model, "--strategy", str(case["strategy"]), "--img-size", "32",
            "--epochs", "2", "--batch-size", "8", "--workers", "0", "--out", str(out), "--logger", "none",
            "--cache", str(case["cache"]), "--precision", str(case["precision"]), "--devices", str(case["devices"]),
            "--balance", str(case["balance"]), "--ema" if case["ema"] else "--no-ema"]
    if case["lr"] == "auto":
        args += ["--lr", "auto"]
    if case["mix"] == "mixup":
        args += ["--mixup", "0.2"]
    elif case["mix"] == "cutmix":
        args += ["--cutmix", "1.0"]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=FULL_SIZE if FULL_SIZE.is_dir() else REPO / "examples" /
                        "ants_bees", help="a folder with train/ and val/ class folders of photos")
    parser.add_argument("--per-class", type=int, default=8, help="train photos per class (val: half)")
    args = parser.parse_args()
    cases = pairwise(WIDER, wider_allowed)
    print(f"{len(cases)} cases on photos from {args.photos}", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = sample_photos(args.photos, Path(tmp) / "photos", args.per_class)
        vit = save_tiny_vit(Path(tmp) / "tiny-vit", labels=2)
        for index, case in enumerate(cases):
            start = time.perf_counter()
            try:
                result = subprocess.run([sys.executable, "-m", "imgcls",
                                         *arguments(case, data, vit, Path(tmp) / f"runs{index}")],
                                        capture_output=True, text=True, timeout=900)
                lines = result.stderr.strip().splitlines() or ["(no output)"]
                # a DDP peer's failure ends with Lightning's "[rank: 1] Child process ... terminated" line: the
                # cause is the error line before it
                cause = [line for line in lines if "Error" in line or "error:" in line][-3:] or lines[-1:]
                verdict = "PASS" if result.returncode == 0 else f"FAIL rc {result.returncode}: " + " | ".join(
                    line.strip()[:300] for line in cause)
            except subprocess.TimeoutExpired:
                verdict = "FAIL: still running after 900 s"
            failures += verdict != "PASS"
            print(f"{time.perf_counter() - start:6.1f} s  {verdict}  {case}", flush=True)
    print(f"{len(cases) - failures}/{len(cases)} cases passed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
