"""Zero flags against the best flags found by hand, on data sets of different kinds made offline.

    python benchmarks/zoo.py [--sets photos,digits,...] [--skip-hand] [--out DIR]

Each set is trained twice with the real CLI (start-up included): `imgcls train DATA` with no flags,
and with the best flags found by hand; the table shows val accuracy and wall time side by side, and
whether zero flags is within 1 point in at most max(2x the hand-picked time, 300 s). Each run's ECE on val
before and after its temperature calibration (cross-fitted, as the run reports it) is shown beside it.

- photos:     examples/ants_bees (downscaled ants and bees, colour);
- digits:     28 px grayscale digit renders (tests/training/digits.py);
- hangul:     Korean syllables in NanumGothic regular/bold/extra-bold, val in the unseen light weight;
- tiny:       the ants/bees photos shrunk to 32 px;
- imbalanced: digits 0-3 with 80, 40, 16 and 8 training images;
- letters52:  52 Latin letters (upper and lower case) in the DejaVu fonts, 28 px.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imgcls.models.checkpoint import load_checkpoint  # noqa: E402
from tests.training.digits import _font_path, make_digits, render_digit  # noqa: E402

HANGUL = "가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허고노도로모보소오조초코토포호구누두루무부수우주추"
HANGUL_TRAIN_FONTS = ("NanumGothic.ttf", "NanumGothicBold.ttf", "NanumGothicExtraBold.ttf")
HANGUL_VAL_FONT = "NanumGothicLight.ttf"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LATIN_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
               "DejaVuSansMono.ttf", "DejaVuSans-Oblique.ttf")

# The best flags found by hand for each set (recorded next to the measurements in the report).
HAND_PICKED = {
    "photos": ["--model", "efficientnet_lite2", "--strategy", "feature-extraction"],
    "digits": ["--model", "small_cnn", "--strategy", "scratch", "--augment", "none", "--no-hflip"],
    "hangul": ["--strategy", "feature-extraction", "--no-hflip"],
    "tiny": ["--model", "small_cnn", "--strategy", "scratch", "--augment", "translate", "--epochs", "30"],
    "imbalanced": ["--model", "small_cnn", "--strategy", "scratch", "--augment", "none", "--no-hflip",
                   "--balance", "loss"],
    "letters52": ["--model", "small_cnn", "--strategy", "scratch", "--augment", "translate", "--no-hflip",
                  "--epochs", "20"],
}


def _hangul_font() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("koreanize_matplotlib")
    return Path(next(iter(spec.submodule_search_locations))) / "fonts"


def render_glyph(text: str, font_path: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """Dark text on a light page, a little shifted and rotated, as a scan would show it."""
    canvas = 2 * size
    font = ImageFont.truetype(font_path, int(rng.uniform(0.6, 0.8) * canvas))
    image = Image.new("L", (canvas, canvas), int(rng.integers(225, 256)))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    shift = rng.uniform(-0.08, 0.08, 2) * canvas
    draw.text(((canvas - (right - left)) / 2 - left + shift[0], (canvas - (bottom - top)) / 2 - top + shift[1]),
              text, fill=int(rng.integers(0, 50)), font=font)
    image = image.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, fillcolor=240)
    array = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    array += rng.normal(0, 8, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")


def make_glyphs(root: Path, symbols: str, train_fonts: list[str], val_fonts: list[str], train: int, val: int,
                seed: int = 0, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    for split, fonts, count in (("train", train_fonts, train), ("val", val_fonts, val)):
        for index, symbol in enumerate(symbols):
            # folder names: the symbol itself when it is a safe, case-distinct name
            folder = root / split / (f"{index:02d}_{symbol}")
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                render_glyph(symbol, fonts[i % len(fonts)], rng, size).save(folder / f"{i:04d}.png")
    return root


def make_tiny(root: Path, size: int = 32) -> Path:
    for path in (REPO / "examples" / "ants_bees").rglob("*"):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            target = root / path.relative_to(REPO / "examples" / "ants_bees")
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS).save(target.with_suffix(".png"))
    return root


def make_imbalanced(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, counts in (("train", (80, 40, 16, 8)), ("val", (20, 20, 20, 20))):
        for digit, count in enumerate(counts):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                render_digit(digit, rng).save(folder / f"{i:04d}.png")
    return root


def build(name: str, where: Path) -> Path:
    if name == "photos":
        return REPO / "examples" / "ants_bees"
    if name == "digits":
        return make_digits(where, train=100, val=30)
    if name == "hangul":
        fonts = _hangul_font()
        return make_glyphs(where, HANGUL[:20], [str(fonts / f) for f in HANGUL_TRAIN_FONTS],
                           [str(fonts / HANGUL_VAL_FONT)], train=24, val=8)
    if name == "tiny":
        return make_tiny(where)
    if name == "imbalanced":
        return make_imbalanced(where)
    if name == "letters52":
        return make_glyphs(where, LETTERS, [_font_path(f) for f in LATIN_FONTS[:5]], [_font_path(LATIN_FONTS[5])],
                           train=20, val=6, size=28)
    raise SystemExit(f"unknown set {name}")


def train(data: Path, flags: list[str], out: Path, name: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "imgcls", "train", str(data), *flags, "--out", str(out), "--name", name,
               "--logger", "none"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        return {"accuracy": float("nan"), "seconds": seconds, "error": result.stderr.strip().splitlines()[-1:]}
    run = Path(result.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    calibration = load_checkpoint(run / "best.pt").info.get("calibration") or {}
    return {"accuracy": metrics["best_val_acc"], "seconds": seconds, "run": str(run),
            "leaderboard": (run / "leaderboard.md").is_file(),
            "ece": (calibration.get("ece_before", float("nan")), calibration.get("ece", float("nan")))}


def ece_text(result: dict) -> str:
    before, after = result.get("ece", (float("nan"), float("nan")))
    return f"ECE {before:.3f}->{after:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(HAND_PICKED), help="comma list of: " + ", ".join(HAND_PICKED))
    parser.add_argument("--skip-hand", action="store_true", help="only zero flags")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="imgcls-zoo-"))
    out = args.out or tmp / "runs"
    rows = []
    try:
        for name in args.sets.split(","):
            data = build(name, tmp / name)
            zero = train(data, [], out, f"{name}-zero")
            hand = {"accuracy": float("nan"), "seconds": float("nan")} if args.skip_hand else train(
                data, HAND_PICKED[name], out, f"{name}-hand")
            allowed = max(2 * hand["seconds"], 300.0) if hand["seconds"] == hand["seconds"] else 300.0
            ok = zero["accuracy"] >= hand["accuracy"] - 0.01 and zero["seconds"] <= allowed
            rows.append((name, zero, hand, ok))
            print(f"{name:11s} zero flags {zero['accuracy']:.4f} in {zero['seconds']:6.1f} s ({ece_text(zero)}) | "
                  f"hand-picked {hand['accuracy']:.4f} in {hand['seconds']:6.1f} s ({ece_text(hand)}; "
                  f"{' '.join(HAND_PICKED[name])}) | "
                  f"{'ok' if ok else 'NOT ok'}" + (f" | {zero['error']}" if "error" in zero else ""), flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{sum(ok for *_, ok in rows)} of {len(rows)} sets: zero flags within 1 point in the allowed time")


if __name__ == "__main__":
    main()
