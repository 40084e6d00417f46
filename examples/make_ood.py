"""Build examples/ood: pictures of none of the ants/bees classes, from what the installed packages ship.

Four kinds, 12 each, so an "unknown" answer is measured on more than one sort of stranger:
- glyphs/  Latin letters and Hangul syllables drawn with the fonts matplotlib and koreanize-matplotlib ship;
- digits/  scikit-learn's 8x8 handwritten digits, upscaled;
- photos/  crops of scikit-learn's two sample photos (a temple in China, a flower);
- textures/ seeded noise, stripes, gradients and blobs.
Each picture is a 160-224 px JPEG (quality 80): the folder stays a few hundred KB.

    python examples/make_ood.py examples/ood
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PER_KIND = 12
QUALITY = 80
SEED = 14


def _fonts() -> list[Path]:
    import koreanize_matplotlib
    import matplotlib

    latin = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    korean = Path(koreanize_matplotlib.__file__).parent / "fonts"
    return [latin / "DejaVuSans.ttf", latin / "DejaVuSerif-Bold.ttf", korean / "NanumGothic.ttf",
            korean / "NanumGothicBold.ttf"]


def glyphs(rng: np.random.Generator) -> list[Image.Image]:
    texts = ["A", "g", "Q", "R7", "xy", "M", "가", "한", "글", "나무", "벌", "개미"]
    fonts = _fonts()
    pictures = []
    for i, text in enumerate(texts):
        size = int(rng.integers(160, 225))
        paper = tuple(int(v) for v in rng.integers(200, 256, 3))
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
        image = Image.new("RGB", (size, size), paper)
        font_path = fonts[(2 + i % 2) if any("\uac00" <= c <= "\ud7a3" for c in text) else i % 2]
        font = ImageFont.truetype(str(font_path), int(size * (0.7 if len(text) == 1 else 0.42)))
        draw = ImageDraw.Draw(image)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text(((size - right - left) / 2, (size - bottom - top) / 2), text, font=font, fill=ink)
        pictures.append(image)
    return pictures


def digits(rng: np.random.Generator) -> list[Image.Image]:
    from sklearn.datasets import load_digits

    data = load_digits()
    pictures = []
    for digit in range(PER_KIND):
        index = int(rng.choice(np.flatnonzero(data.target == digit % 10)))
        array = (255 - data.images[index] * 16).clip(0, 255).astype(np.uint8)  # dark ink on white
        image = Image.fromarray(array).resize((192, 192), Image.Resampling.BICUBIC).convert("RGB")
        pictures.append(image.filter(ImageFilter.GaussianBlur(1.5)))
    return pictures


def photos(rng: np.random.Generator) -> list[Image.Image]:
    from sklearn.datasets import load_sample_image

    pictures = []
    for i in range(PER_KIND):
        array = load_sample_image("china.jpg" if i % 2 == 0 else "flower.jpg")
        side = int(rng.integers(180, 400))
        top = int(rng.integers(0, array.shape[0] - side + 1)) if side < array.shape[0] else 0
        side = min(side, array.shape[0])
        left = int(rng.integers(0, array.shape[1] - side + 1))
        crop = Image.fromarray(array[top:top + side, left:left + side])
        pictures.append(crop.resize((192, 192), Image.Resampling.BICUBIC))
    return pictures


def textures(rng: np.random.Generator) -> list[Image.Image]:
    size = 192
    y, x = np.mgrid[0:size, 0:size] / size
    pictures = []
    for i in range(PER_KIND):
        colour_a, colour_b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        kind = i % 4
        if kind == 0:  # smooth noise
            mask = np.kron(rng.random((12, 12)), np.ones((16, 16)))
        elif kind == 1:  # stripes at a random angle
            angle = rng.uniform(0, np.pi)
            mask = (np.sin((x * np.cos(angle) + y * np.sin(angle)) * rng.uniform(10, 40)) > 0).astype(float)
        elif kind == 2:  # gradient
            mask = (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) % 1.0
        else:  # blobs
            mask = np.zeros((size, size))
            for _ in range(8):
                cy, cx, r = rng.random(), rng.random(), rng.uniform(0.05, 0.2)
                mask += ((y - cy) ** 2 + (x - cx) ** 2 < r * r)
            mask = mask.clip(0, 1)
        array = mask[..., None] * colour_a + (1 - mask[..., None]) * colour_b + rng.normal(0, 8, (size, size, 3))
        pictures.append(Image.fromarray(array.clip(0, 255).astype(np.uint8)))
    return pictures


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    for kind, make in (("glyphs", glyphs), ("digits", digits), ("photos", photos), ("textures", textures)):
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(make(rng)):
            image.save(folder / f"{kind}_{i:02d}.jpg", quality=QUALITY)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/ood"))
