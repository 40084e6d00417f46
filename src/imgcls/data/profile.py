"""A cheap look at the training images, for settings decided from the data.

A sample of pictures (decoded small) says how large they are, whether they have colour, and whether
they look like documents or glyphs (a plain background with strokes) rather than photos; the label
counts say how many images each class has and how unbalanced they are.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgcls.data.images import ImageLoadError, load_image
from imgcls.data.source import DataSource

log = logging.getLogger(__name__)

SAMPLE = 48
# A picture is grayscale when its channels differ by less than this on average (0-255 scale): JPEG
# noise on a gray scan stays well below it, any coloured photo well above.
GRAY_CHANNEL_SPREAD = 6.0
# Glyph-like: most pixels sit close to the background level (the commonest one), the rest are strokes.
BACKGROUND_SHARE = 0.55
BACKGROUND_TOLERANCE = 40


@dataclass(frozen=True)
class DataProfile:
    images: int  # training images
    classes: int
    per_class: tuple[int, ...]
    typical_side: int  # median shorter side of the sampled images, pixels
    grayscale: float  # share of sampled images without colour
    glyph_like: float  # share of sampled images that are a plain background with strokes

    @property
    def min_per_class(self) -> int:
        return min(self.per_class) if self.per_class else 0

    @property
    def imbalance(self) -> float:
        """Largest class over smallest class (1 = balanced)."""
        return max(self.per_class) / max(1, self.min_per_class) if self.per_class else 1.0

    @property
    def tiny(self) -> bool:
        return self.typical_side <= 64

    @property
    def is_grayscale(self) -> bool:
        return self.grayscale >= 0.9

    @property
    def is_glyphs(self) -> bool:
        """Documents, digits, letters, symbols: a mirrored picture is a different (or no) symbol."""
        return self.is_grayscale and self.glyph_like >= 0.7

    def describe(self) -> str:
        kind = "glyph-like" if self.is_glyphs else "grayscale" if self.is_grayscale else "colour"
        return (f"{self.images} train images, {self.classes} classes ({self.min_per_class}-{max(self.per_class)} "
                f"per class), typical shorter side {self.typical_side} px, {kind}")


def _looks(pixels: np.ndarray) -> tuple[int, bool, bool]:
    """(shorter side, grayscale?, glyph-like?) of one HxWx3 uint8 picture."""
    rgb = pixels.astype(np.int16)
    spread = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
    gray = rgb.mean(axis=2)
    background = np.bincount(gray.astype(np.uint8).ravel(), minlength=256).argmax()
    share = float((np.abs(gray - background) <= BACKGROUND_TOLERANCE).mean())
    return min(pixels.shape[:2]), spread < GRAY_CHANNEL_SPREAD, share >= BACKGROUND_SHARE


def _sample_pictures(source: DataSource, count: int) -> list[tuple[int, np.ndarray]]:
    """(shorter side at full size, pixels decoded small) of up to ``count`` training images."""
    if "train" in source.arrays:
        images = source.arrays["train"][0]
        step = max(1, len(images) // count)
        return [(min(image.shape[:2]), np.asarray(Image.fromarray(image).convert("RGB")))
                for image in images[::step][:count]]
    paths = source.paths("train") or []
    step = max(1, len(paths) // count)
    found = []
    for path in paths[::step][:count]:
        try:
            with Image.open(path) as image:
                side = min(image.size)
            picture = load_image(path, draft_size=64)
        except (OSError, ImageLoadError):
            continue
        picture.thumbnail((128, 128))
        found.append((side, np.asarray(picture)))
    return found


def profile_data(source: DataSource, sample: int = SAMPLE) -> DataProfile:
    labels = source.labels("train")
    counts = Counter(labels)
    per_class = tuple(counts.get(c, 0) for c in range(len(source.classes)))
    pictures = _sample_pictures(source, sample)
    looks = [(side, *_looks(pixels)[1:]) for side, pixels in pictures]
    n = max(1, len(looks))
    return DataProfile(images=len(labels), classes=len(source.classes), per_class=per_class,
                       typical_side=int(statistics.median([s for s, _, _ in looks])) if looks else 224,
                       grayscale=sum(g for _, g, _ in looks) / n, glyph_like=sum(k for _, _, k in looks) / n)
