"""Opening one image file as an 8-bit RGB picture, whatever it is on disk.

Every reader in imgcls (training, evaluation, prediction, serving, doctor) goes through
:func:`load_image`, so a palette GIF, an RGBA PNG, a 16-bit scan, a CMYK JPEG or a rotated phone
photo all become the same kind of input, and a broken file becomes an :class:`ImageLoadError`
naming the file and the reason rather than a crash deep inside a transform.
"""

from __future__ import annotations

import io
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from imgcls.errors import DataError, first_line


def _heif_plugin() -> bool:
    """HEIC/HEIF (iPhone photos) through the pillow-heif plugin, when it is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    Image.init()
    return "HEIF" in Image.OPEN

# The only decoders Pillow may use: its own still-image readers of formats people keep pictures in. A file
# is identified by its content, not its name, and Pillow also knows formats whose plugins call outside
# programs (EPS runs Ghostscript, WMF needs Windows), only point at other software (BUFR, GRIB, HDF5,
# MPEG), or hold scientific or niche data that no photo folder has (FITS, SPIDER, PCD, McIdas...).
# Multi-picture JPEGs from phones (MPO) open through the JPEG plugin; animations (GIF, APNG, FLI/FLC,
# WebP) give their first frame. AVIF and JPEG 2000 need their codec built into Pillow; HEIC/HEIF
# needs the pillow-heif plugin installed.
RASTER_FORMATS = tuple(fmt for fmt, available in (
    ("JPEG", True), ("PNG", True), ("GIF", True), ("BMP", True), ("DIB", True), ("WEBP", features.check("webp")),
    ("TIFF", True), ("PPM", True), ("AVIF", features.check("avif")), ("JPEG2000", features.check("jpg_2000")),
    ("TGA", True), ("PCX", True), ("ICO", True), ("CUR", True), ("ICNS", True), ("DDS", True), ("PSD", True),
    ("QOI", True), ("SGI", True), ("IM", True), ("XBM", True), ("XPM", True), ("FLI", True), ("BLP", True),
    ("DCX", True), ("MSP", True), ("SUN", True), ("FTEX", True), ("HEIF", _heif_plugin()),
) if available)

# Lower-case suffixes that are treated as images: those Pillow registers for the formats above. Anything
# else in a class folder (.DS_Store, Thumbs.db, notes.txt, ...) is not an image: ignored, and counted.
IMAGE_EXTENSIONS = frozenset({ext for ext, fmt in Image.registered_extensions().items()
                              if fmt in RASTER_FORMATS or fmt == "MPO"} | {".jpg", ".jpeg", ".jpe", ".jfif"})

# A file that takes longer than this to decode is skipped, so one pathological file cannot stall a run.
DECODE_SECONDS = 20.0

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


class _DecodeTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _DecodeTimeout


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_DecodeTimeout` in the block after ``seconds`` (an interval timer: two system calls).
    Only in a main thread with no other alarm handler (loader workers, the CLI); elsewhere no limit.
    Pillow decodes in chunks and returns to Python between them, where the alarm lands."""
    usable = (threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None))
    if not usable:
        yield
        return
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def decode_image(image: Image.Image, label: str | Path, draft_size: int | None = None) -> Image.Image:
    """Decode an opened image to RGB with its EXIF orientation applied (see :func:`load_image`)."""
    try:
        if draft_size and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (draft_size, draft_size))
        with warnings.catch_warnings(), time_limit(DECODE_SECONDS):
            warnings.simplefilter("ignore")  # EXIF and palette warnings are not the user's problem
            image.load()
            try:
                ImageOps.exif_transpose(image, in_place=True)  # not in place, it copies even an upright picture
            except Exception:  # a broken EXIF block must not cost the picture  # noqa: BLE001
                pass
            return to_rgb(image)
    except _DecodeTimeout:
        raise ImageLoadError(label, "too-slow", f"took over {DECODE_SECONDS:g} s to decode") from None
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
    image = open_image(source, name)
    try:
        rgb = decode_image(image, label, draft_size)
    except BaseException:
        image.close()
        raise
    if rgb is not image:
        image.close()
        return rgb
    if getattr(image, "n_frames", 1) == 1:
        return image  # loading one frame closed the file; the pixels stay (closing would free them)
    # A multi-frame file keeps its file open to seek: close it, keeping a copy of this frame's pixels.
    owned = image.copy()
    image.close()
    return owned
