"""A multi-label data set composed from the repo's own pictures: 1-3 objects pasted on each canvas.

Objects: crops of the bundled ant and bee photos (examples/ants_bees) and drawn shapes (circle, square,
triangle). Each canvas holds 1-3 different objects on a noisy background; its labels are the objects it
shows. Training canvases use the ants/bees train photos, val and test canvases the val photos (val and
test halves apart), so no photo is seen in two splits. Deterministic for a given seed.

    python examples/make_multilabel.py OUT [--size 160] [--train 300] [--val 100] [--test 150]

writes OUT/train/, OUT/val/, OUT/test/, each with its images and labels.csv (path,labels).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ANTS_BEES = Path(__file__).resolve().parent / "ants_bees"
CLASSES = ("ant", "bee", "circle", "square", "triangle")
PHOTO_FOLDER = {"ant": "ants", "bee": "bees"}


def _photos(split: str, name: str) -> list[Path]:
    return sorted((ANTS_BEES / split / PHOTO_FOLDER[name]).iterdir())


def _photo_pool(split: str) -> dict[str, list[Path]]:
    """train canvases use the train photos; val and test each half of the val photos."""
    source = "train" if split == "train" else "val"
    pool = {name: _photos(source, name) for name in PHOTO_FOLDER}
    if split != "train":
        pool = {name: paths[0::2] if split == "val" else paths[1::2] for name, paths in pool.items()}
    return pool


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    base = rng.integers(60, 200, 3)
    ramp = np.linspace(-30, 30, size)[None, :, None] * rng.choice([-1, 1])
    noise = rng.normal(0, 10, (size, size, 3))
    return Image.fromarray(np.clip(base + ramp + noise, 0, 255).astype(np.uint8))


def _shape(name: str, side: int, rng: np.random.Generator) -> Image.Image:
    """A filled shape in a random saturated colour on a transparent square."""
    tile = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    colour = tuple(int(c) for c in rng.permutation([int(rng.integers(200, 256)), int(rng.integers(0, 60)),
                                                    int(rng.integers(0, 256))])) + (255,)
    pad = side // 10
    box = (pad, pad, side - pad, side - pad)
    if name == "circle":
        draw.ellipse(box, fill=colour, outline=(0, 0, 0, 255), width=max(1, side // 30))
    elif name == "square":
        draw.rectangle(box, fill=colour, outline=(0, 0, 0, 255), width=max(1, side // 30))
    else:
        draw.polygon([(side // 2, pad), (side - pad, side - pad), (pad, side - pad)], fill=colour,
                     outline=(0, 0, 0, 255))
    return tile.rotate(float(rng.uniform(-25, 25)), resample=Image.BICUBIC)


def _photo_crop(path: Path, side: int, rng: np.random.Generator) -> Image.Image:
    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        crop = int(min(w, h) * rng.uniform(0.75, 1.0))
        x, y = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
        return image.crop((x, y, x + crop, y + crop)).resize((side, side), Image.BICUBIC).convert("RGBA")


def _slots(count: int, size: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(x, y, side) per object: one object fills much of the canvas, several share it in a grid."""
    if count == 1:
        side = int(size * rng.uniform(0.6, 0.8))
        return [(int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1)), side)]
    cells = [(0, 0), (1, 0), (0, 1), (1, 1)]
    chosen = rng.permutation(len(cells))[:count]
    half = size // 2
    slots = []
    for index in chosen:
        cx, cy = cells[index]
        side = int(half * rng.uniform(0.8, 0.98))
        slots.append((cx * half + int(rng.integers(0, half - side + 1)),
                      cy * half + int(rng.integers(0, half - side + 1)), side))
    return slots


def make_canvas(labels: list[str], pool: dict[str, list[Path]], size: int,
                rng: np.random.Generator) -> Image.Image:
    canvas = _background(size, rng)
    for name, (x, y, side) in zip(labels, _slots(len(labels), size, rng)):
        if name in PHOTO_FOLDER:
            photos = pool[name]
            tile = _photo_crop(photos[int(rng.integers(len(photos)))], side, rng)
        else:
            tile = _shape(name, side, rng)
        canvas.paste(tile, (x, y), tile)
    return canvas


def make_split(out: Path, split: str, count: int, size: int, seed: int) -> None:
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    pool = _photo_pool(split)
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        k = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
        labels = sorted(str(c) for c in rng.choice(CLASSES, size=k, replace=False))
        name = f"{split}_{i:04d}.jpg"
        make_canvas(labels, pool, size, rng).save(folder / name, quality=90)
        rows.append((name, " ".join(labels)))
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels"])
        writer.writerows(rows)


SPLITS = ("train", "val", "test")


def make_multilabel(out: str | os.PathLike, size: int = 160, train: int = 300, val: int = 100, test: int = 150,
                    seed: int = 0) -> Path:
    """Write the data set into ``out`` (train/, val/ and, when ``test`` > 0, test/); returns ``out``."""
    out = Path(out)
    for split, count in (("train", train), ("val", val), ("test", test)):
        if count:
            make_split(out, split, count, size, seed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_multilabel(args.out, args.size, args.train, args.val, args.test, args.seed))


if __name__ == "__main__":
    main()
