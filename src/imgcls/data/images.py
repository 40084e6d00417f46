"""Opening one image file as an 8-bit RGB picture, whatever it is on disk.

Every reader in imgcls (training, evaluation, prediction, serving, doctor) goes through
:func:`load_image`, so a palette GIF, an RGBA PNG, a 16-bit scan, a CMYK JPEG or a rotated phone
photo all become the same kind of input, and a broken file becomes an :class:`ImageLoadError`
naming the file and the reason rather than a crash deep inside a transform.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from imgcls.errors import DataError, first_line

# Lower-case suffixes that are treated as images. Anything else in a class folder
# (.DS_Store, Thumbs.db, notes.txt, ...) is not an image and is ignored.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm", *((".avif",) if features.check("avif") else ()),
})

# The only decoders Pillow may use. A file is identified by its content, not its name, and Pillow
# also knows formats whose plugins call outside programs (EPS runs Ghostscript) or are rarely
# hardened; a photo folder needs none of them.
# (Multi-picture JPEGs from phones open through the JPEG plugin.)
RASTER_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "PPM",
                  *(("AVIF",) if features.check("avif") else ()))

# Above this many pixels a file is refused as a decompression bomb (Pillow's own error threshold);
# the check reads only the header, so a bomb is never decoded.
MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)

# Modes that need more than a plain convert("RGB") to look right.
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "La", "PA", "RGBa")


class ImageLoadError(DataError):
    """One file that cannot be used as an image; ``kind`` says why in one word."""

    def __init__(self, path: str | Path, kind: str, detail: str):
        self.path, self.kind, self.detail = str(path), kind, detail
        super().__init__(f"cannot read image {path}: {detail}")


def is_image_file(path: str | Path) -> bool:
    """True for files whose suffix is an image format's (hidden files such as ._x.jpg excluded)."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def open_image(source: str | Path | bytes, name: str | Path | None = None) -> Image.Image:
    """Open (header only) and check the size, so a bomb or a non-image fails before decoding.

    ``name`` is how errors refer to ``source`` when it is bytes (default ``<upload>``).
    """
    label = name or ("<upload>" if isinstance(source, bytes) else source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=RASTER_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(label, "decompression-bomb", first_line(exc)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(label, "not-an-image", "not a recognised image format") from None
    except FileNotFoundError:
        raise ImageLoadError(label, "missing", "file not found") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on hostile input
        raise ImageLoadError(label, "corrupt", f"unreadable header ({first_line(exc)})") from None
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise ImageLoadError(label, "corrupt", f"invalid size {width}x{height}")
    if width * height > MAX_PIXELS:
        image.close()
        raise ImageLoadError(label, "decompression-bomb",
                             f"{width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit")
    return image


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    array = np.asarray(image, dtype=np.float64)
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(array.max()) if array.size else 0.0
    if image.mode.startswith("I;16"):
        scale = 65535.0
    else:  # 'I' and 'F' carry no range: 16-bit data read as I, 0..255 or 0..1 floats
        scale = 65535.0 if top > 255 else (255.0 if top > 1 else 1.0)
    array = np.clip(array / scale * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(array, mode="L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: alpha composited on white, 16-bit and float rescaled, CMYK converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in HIGH_BIT_MODES:
        return _rescale_to_8bit(image)
    if (mode == "P" and "transparency" in image.info) or mode in ALPHA_MODES:
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_image(image: Image.Image, label: str | Path, draft_size: int | None = None) -> Image.Image:
    """Decode an opened image to RGB with its EXIF orientation applied (see :func:`load_image`)."""
    try:
        if draft_size and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (draft_size, draft_size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and palette warnings are not the user's problem
            image.load()
            try:
                image = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block must not cost the picture  # noqa: BLE001
                pass
            return to_rgb(image)
    except Exception as exc:  # noqa: BLE001 - any failure to decode an untrusted file is the file's fault
        raise ImageLoadError(label, "corrupt", f"cannot decode ({first_line(exc)})") from None


def load_image(source: str | Path | bytes, draft_size: int | None = None, name: str | Path | None = None
               ) -> Image.Image:
    """Decode ``source`` to an RGB image, EXIF orientation applied.

    ``draft_size`` lets JPEG decode at a reduced scale (1/2, 1/4, 1/8) as long as both sides stay
    at least that many pixels: a 12-megapixel photo headed for a 224-pixel crop decodes ~10x faster.
    Any failure is an :class:`ImageLoadError` (``kind``: missing, not-an-image, decompression-bomb,
    corrupt), never another exception.
    """
    label = name or ("<upload>" if isinstance(source, bytes) else source)
    with open_image(source, name) as image:
        rgb = decode_image(image, label, draft_size)
        # Leaving the block closes the file and the opened image; an RGB file comes back as that
        # same object, so keep a copy that owns its pixels.
        return image.copy() if rgb is image else rgb
