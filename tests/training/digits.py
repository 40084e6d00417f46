"""An MNIST-like digit set, generated offline: 28-pixel grayscale PNGs of 0-9 in class folders.

Digits are drawn with the DejaVu fonts that ship with matplotlib, then randomly shifted, rotated,
scaled and noised, so a small CNN trained from scratch has something real (if easy) to learn.
Used by the scratch-training tests and ``benchmarks/train_digits.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf",
         "DejaVuSans-Oblique.ttf")


def _font_path(name: str) -> str:
    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


def render_digit(digit: int, rng: np.random.Generator, size: int = 28, noise: float = 12.0) -> Image.Image:
    """One white-on-black digit, randomly placed, rotated (+-15 degrees), scaled and noised."""
    canvas = 2 * size
    font = ImageFont.truetype(_font_path(FONTS[rng.integers(len(FONTS))]), int(rng.uniform(0.55, 0.8) * canvas))
    image = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    shift = rng.uniform(-0.1, 0.1, 2) * canvas
    position = ((canvas - (right - left)) / 2 - left + shift[0], (canvas - (bottom - top)) / 2 - top + shift[1])
    draw.text(position, str(digit), fill=int(rng.integers(200, 256)), font=font)
    image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    array = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    array += rng.normal(0, noise, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")


def make_digits(root: Path, train: int = 100, val: int = 30, seed: int = 0, size: int = 28,
                digits: range | list[int] = range(10)) -> Path:
    """root/train/<d>/*.png and root/val/<d>/*.png; returns root."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for digit in digits:
            folder = Path(root) / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                render_digit(digit, rng, size).save(folder / f"{i:05d}.png")
    return Path(root)
