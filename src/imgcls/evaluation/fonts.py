"""Hangul in pictures and reports: NanumGothic, the font file koreanize-matplotlib ships.

The file is used directly rather than through ``import koreanize_matplotlib``: that module imports
``distutils``, which Python 3.12 no longer has, and sets matplotlib's font at import time.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import logging
from functools import cache
from pathlib import Path

from imgcls.cache import cache_dir, content_key
from imgcls.errors import ImgclsError
from imgcls.rundir import atomic_write_bytes

log = logging.getLogger(__name__)

FAMILY = "NanumGothic"
HTML_FAMILY = "imgcls-hangul"


@cache
def nanum_gothic() -> Path | None:
    """NanumGothic.ttf inside the installed koreanize-matplotlib package (found without importing it)."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "fonts" / "NanumGothic.ttf"
        if path.is_file():
            return path
    log.warning("koreanize-matplotlib's NanumGothic font is missing; Korean text in pictures may show as boxes "
                "(pip install koreanize-matplotlib)")
    return None


def use_hangul_font() -> None:
    """Make matplotlib draw Hangul with NanumGothic, falling back to DejaVu Sans for what it lacks."""
    import matplotlib
    from matplotlib import font_manager

    path = nanum_gothic()
    if path is None:
        return
    font_manager.fontManager.addfont(str(path))
    matplotlib.rcParams["font.family"] = [FAMILY, "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False  # NanumGothic has no U+2212 minus


def font_face_css(text: str) -> str:
    """An @font-face rule embedding NanumGothic cut down to the non-ASCII characters of ``text``
    (a few kB), so a report shows its Korean even where no Korean font is installed; '' when not needed.
    Kept under ``$IMGCLS_CACHE/fonts`` by font file and characters: cutting the font takes about a second,
    and every report of the same classes needs the same rule."""
    characters = "".join(sorted({c for c in text if ord(c) > 127}))
    path = nanum_gothic()
    if not characters or path is None:
        return ""
    stat = path.stat()
    entry = cache_dir("fonts", content_key(str(path), stat.st_size, stat.st_mtime_ns, characters) + ".css")
    try:
        return entry.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        pass
    css = _font_face_rule(path, characters)
    try:
        atomic_write_bytes(entry, css.encode("ascii"))
    except (OSError, ImgclsError):  # an unwritable cache costs the next report a second, nothing more
        pass
    return css


def _font_face_rule(path: Path, characters: str) -> str:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.flavor, options.hinting = "woff", False  # woff: zlib-compressed, read by every browser
    options.drop_tables += ["TSI0", "TSI1", "TSI2", "TSI3", "TSI5"]  # hinting sources it cannot subset
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    font = TTFont(path, lazy=True)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters)
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.flavor = "woff"
    font.save(buffer)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f"@font-face{{font-family:'{HTML_FAMILY}';src:url(data:font/woff;base64,{data}) format('woff');"
            f"unicode-range:{_unicode_range(characters)}}}")


def _unicode_range(characters: str) -> str:
    """'U+AC1C,U+BBF8-BBF9': the font applies to these characters only, so Latin text keeps the page's font."""
    codes = sorted(ord(c) for c in characters)
    spans: list[list[int]] = []
    for code in codes:
        if spans and code == spans[-1][1] + 1:
            spans[-1][1] = code
        else:
            spans.append([code, code])
    return ",".join(f"U+{a:X}" if a == b else f"U+{a:X}-{b:X}" for a, b in spans)
