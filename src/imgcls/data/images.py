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
from PIL import Image, ImageOps, UnidentifiedImageError

from imgcls.errors import DataError

# Lower-case suffixes that are treated as images. Anything else in a class folder
# (.DS_Store, Thumbs.db, notes.txt, ...) is not an image and is ignored.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm",
})

# Above this many pixels a file is refused as a decompression bomb (Pillow's own error threshold);
# the check reads only the header, so a bomb is never decoded.
MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)


class ImageLoadError(DataError):
    """One file that cannot be used as an image; ``kind`` says why in one word."""

    def __init__(self, path: str | Path, kind: str, detail: str):
        self.path, self.kind, self.detail = str(path), kind, detail
        super().__init__(f"cannot read image {path}: {detail}")


def is_image_file(path: str | Path) -> bool:
    """True for files whose suffix is an image format's (hidden files such as ._x.jpg excluded)."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def open_image(source: str | Path | bytes) -> Image.Image:
    """Open (header only) and check the size, so a bomb or a non-image fails before decoding."""
    label = "<upload>" if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(label, "decompression-bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(label, "not-an-image", "not a recognised image format") from None
    except FileNotFoundError:
        raise ImageLoadError(label, "missing", "file not found") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(label, "corrupt", f"unreadable header ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageLoadError(label, "corrupt", f"invalid size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise ImageLoadError(label, "decompression-bomb",
                             f"{width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: alpha composited on white, 16-bit and float rescaled, CMYK converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        # 16-bit data uses 0..65535; some 'I' or 'F' images are already 0..255 or 0..1.
        top = array.max() if array.size else 0
        scale = 65535.0 if top > 255 else (255.0 if top > 1 else 1.0)
        array = np.clip(array / scale * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def load_image(source: str | Path | bytes, draft_size: int | None = None) -> Image.Image:
    """Decode ``source`` to an RGB image, EXIF orientation applied.

    ``draft_size`` lets JPEG decode at a reduced scale (1/2, 1/4, 1/8) as long as both sides stay
    at least that many pixels: a 12-megapixel photo headed for a 224-pixel crop decodes ~10x faster.
    """
    image = open_image(source)
    label = "<upload>" if isinstance(source, bytes) else source
    try:
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and palette warnings are not the user's problem
            image.load()
            try:
                image = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block must not cost the picture  # noqa: BLE001
                pass
            return to_rgb(image)
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError,
            Image.DecompressionBombError) as exc:
        raise ImageLoadError(label, "corrupt", f"cannot decode ({exc})") from None

