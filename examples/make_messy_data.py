"""Build a messy photo folder from the ants/bees photos: every problem `imgcls doctor` knows about.

Korean class names (개미 = ants, 벌 = bees), the val/벌 folder name in macOS's decomposed (NFD) form,
broken files (truncated JPEG, text and HTML saved as images, a decompression bomb), junk (.DS_Store,
Thumbs.db, notes.txt, a .heic), odd-but-valid images (RGBA, palette, palette with transparency, LA,
grey, 1-bit, CMYK, 16-bit, 32-bit integer and float, EXIF-rotated, 1x1 and 6x8 pixels), exact and near
duplicates, a label conflict, train/val leaks (exact and near), an empty class (빈폴더) and a small
class missing from val (기타, also the imbalance case).

    python examples/make_messy_data.py examples/ants_bees /tmp/messy
    imgcls doctor /tmp/messy
    imgcls train /tmp/messy --epochs 4 --out /tmp/runs      # skips and names the broken files
    imgcls predict /tmp/runs/efficientnet_lite0-feature-extraction /tmp/messy/odd

The names of the files it plants are in BROKEN, ODD, DUPLICATES and LEAKS (tests check doctor finds each).
"""

from __future__ import annotations

import io
import shutil
import struct
import sys
import unicodedata
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

ANTS, BEES, EMPTY, OTHER = "개미", "벌", "빈폴더", "기타"

# relative path -> doctor kind expected for it
BROKEN = {
    f"train/{ANTS}/잘린_다운로드.jpg": "corrupt",
    f"train/{ANTS}/text_saved_as.jpg": "not-an-image",
    f"train/{BEES}/web_page.png": "not-an-image",
    f"train/{BEES}/bomb.png": "decompression-bomb",
    f"val/{ANTS}/truncated.png": "corrupt",
}
IGNORED = {f"train/{ANTS}/notes.txt": "ignored-file", f"train/{BEES}/IMG_0001.heic": "ignored-file"}
JUNK = [f"train/{ANTS}/.DS_Store", f"train/{BEES}/Thumbs.db", f"train/{EMPTY}/.DS_Store", f"val/{ANTS}/._0013035.jpg"]
# odd-but-valid images: relative path -> mode on disk
ODD = {
    "rgba.png": "RGBA", "palette.png": "P", "palette_transparent.gif": "P", "grey_alpha.png": "LA",
    "grey.jpg": "L", "bilevel.bmp": "1", "cmyk.jpg": "CMYK", "sixteen_bit.png": "I;16", "int32.tif": "I",
    "float32.tif": "F", "rotated_exif.jpg": "RGB", "tiny_1x1.png": "RGB", "tiny_6x8.jpg": "RGB",
}
ALREADY_ODD = {f"train/{ANTS}/imageNotFound.gif": "unusual-mode"}  # a palette GIF of the original photos
DUPLICATES = {f"train/{ANTS}/copy_of_first.jpg": "duplicate", f"train/{BEES}/resized_copy.jpg": "near-duplicate",
              f"train/{ANTS}/bee_filed_as_ant.jpg": "duplicate"}
LEAKS = {f"val/{ANTS}/leaked_from_train.jpg": "leak", f"val/{BEES}/leaked_resized.jpg": "leak"}
CLASS_PROBLEMS = {f"train/{EMPTY}": "empty-class", f"val/{OTHER}": "class-missing-from-split",
                  f"train/{OTHER}": "imbalance"}


def _jpeg_bytes(image: Image.Image, **options) -> bytes:  # noqa: ANN003
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid PNG header declaring 1.6 gigapixels, with almost no data: refused before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + _png_chunk(b"IEND", b""))


def _odd(photo: Image.Image, name: str) -> bytes:
    """``photo`` stored as the awkward file ``name`` (a key of ODD)."""
    photo = photo.convert("RGB")
    grey = photo.convert("L")
    alpha = Image.linear_gradient("L").resize(photo.size)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": pixels are stored turned left
    image, options = {
        "rgba.png": (Image.merge("RGBA", (*photo.split(), alpha)), {}),
        "palette.png": (photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), {}),
        "palette_transparent.gif": (photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=32),
                                    {"transparency": 0}),
        "grey_alpha.png": (Image.merge("LA", (grey, alpha)), {}),
        "grey.jpg": (grey, {"quality": 90}),
        "bilevel.bmp": (grey.convert("1"), {}),
        "cmyk.jpg": (photo.convert("CMYK"), {"quality": 90}),
        "sixteen_bit.png": (Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), {}),
        "int32.tif": (Image.fromarray(np.asarray(grey).astype(np.int32) * 257), {}),
        "float32.tif": (Image.fromarray(np.asarray(grey).astype(np.float32) / 255.0), {}),
        "rotated_exif.jpg": (photo.transpose(Image.Transpose.ROTATE_90), {"exif": exif, "quality": 90}),
        "tiny_1x1.png": (photo.resize((1, 1)), {}),
        "tiny_6x8.jpg": (photo.resize((6, 8)), {}),
    }[name]
    buffer = io.BytesIO()
    image.save(buffer, {".jpg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF"}[name[-4:]],
               **options)
    return buffer.getvalue()


def _shapes(seed: int, size: int = 96) -> Image.Image:
    """A drawing of random coloured boxes: nothing like an insect, and unlike each other."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, size - 16, 2))
        x1, y1 = x0 + int(rng.integers(8, 48)), y0 + int(rng.integers(8, 48))
        draw.rectangle((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def make_messy(src: Path, dst: Path) -> Path:
    """Copy ``src`` (train/ and val/ with ants/ and bees/) to ``dst`` with Korean names and every mess."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise SystemExit(f"{dst} is not empty; choose a new folder")
    for split in ("train", "val"):
        for english, korean in (("ants", ANTS), ("bees", BEES)):
            name = unicodedata.normalize("NFD", korean) if (split, korean) == ("val", BEES) else korean
            shutil.copytree(src / split / english, dst / split / name)
    bees_val = dst / "val" / unicodedata.normalize("NFD", BEES)

    def first(folder: Path, index: int = 0) -> Path:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[index]

    ant, bee = first(dst / "train" / ANTS), first(dst / "train" / BEES)
    ant_bytes = ant.read_bytes()
    files: dict[str, bytes] = {
        f"train/{ANTS}/잘린_다운로드.jpg": ant_bytes[: len(ant_bytes) * 6 // 10],
        f"train/{ANTS}/text_saved_as.jpg": "개미 사진 목록\nants photo list\n".encode(),
        f"train/{BEES}/web_page.png": b"<!DOCTYPE html><html><body>403 Forbidden</body></html>",
        f"train/{BEES}/bomb.png": bomb_png(),
        f"train/{ANTS}/notes.txt": "수집 메모".encode(),
        f"train/{BEES}/IMG_0001.heic": b"\x00\x00\x00\x18ftypheic" + bytes(64),
        f"train/{ANTS}/.DS_Store": bytes(64), f"train/{BEES}/Thumbs.db": bytes(64),
        f"train/{EMPTY}/.DS_Store": bytes(64), f"val/{ANTS}/._0013035.jpg": bytes(64),
        f"train/{ANTS}/copy_of_first.jpg": ant_bytes,
        f"train/{ANTS}/bee_filed_as_ant.jpg": bee.read_bytes(),
        f"val/{ANTS}/leaked_from_train.jpg": first(dst / "train" / ANTS, 1).read_bytes(),
    }
    with Image.open(bee) as image:
        files[f"train/{BEES}/resized_copy.jpg"] = _jpeg_bytes(image.resize((image.width * 3 // 4,
                                                                             image.height * 3 // 4)), quality=60)
    with Image.open(first(dst / "train" / BEES, 1)) as image:
        files["val/BEES/leaked_resized.jpg"] = _jpeg_bytes(ImageEnhance.Brightness(
            image.resize((image.width // 2, image.height // 2))).enhance(1.1), quality=70)
    with Image.open(first(dst / "val" / ANTS, 2)) as image:
        png = io.BytesIO()
        image.save(png, "PNG")
        files[f"val/{ANTS}/truncated.png"] = png.getvalue()[: len(png.getvalue()) // 2]
    # Odd-but-valid images, each made from (and replacing) a different photo so that they are not
    # near copies of one another: in train (ants), val (bees) and odd/ (for predict, from val ants).
    for folder, photos in ((f"train/{ANTS}", dst / "train" / ANTS), ("val/BEES", bees_val),
                           ("odd", dst / "val" / ANTS)):
        for index, name in enumerate(ODD, start=4):
            photo_path = first(photos, index)
            with Image.open(photo_path) as photo:
                files[f"{folder}/{name}"] = _odd(photo, name)
            if folder != "odd":
                photo_path.unlink()
    for i in range(6):
        files[f"train/{OTHER}/무늬_{i}.png"] = _png_bytes(_shapes(i))
    for relative, data in files.items():
        path = dst / relative.replace("val/BEES", str(bees_val.relative_to(dst)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dst


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(make_messy(Path(sys.argv[1]), Path(sys.argv[2])))
