"""Every file of a folder is accounted for: predicted (or usable), skipped with a reason, or ignored
and counted. The folder holds a picture in every format Pillow can write here, animations, broken
files and files that are not images."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls.data.images import RASTER_FORMATS, load_image
from tests.helpers import run_cli

# Writers whose output is not a picture imgcls reads (documents, vector formats, scientific data).
NOT_READ = {"EPS", "PDF", "PALM", "WMF", "BUFR", "GRIB", "HDF5", "SPIDER"}


def _picture(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))


def _save_any_mode(image: Image.Image, path: Path, fmt: str) -> bool:
    for mode in ("RGB", "RGBA", "L", "P", "1"):
        try:
            buffer = io.BytesIO()
            image.convert(mode).save(buffer, fmt)
        except Exception:  # noqa: BLE001 - this writer wants another mode (or size)
            continue
        path.write_bytes(buffer.getvalue())
        return True
    return False


def make_every_format_folder(root: Path) -> dict[str, int]:
    """root/<class>/ files; returns how many are pictures imgcls reads, broken ones, and other files."""
    rng = np.random.default_rng(0)
    extensions = Image.registered_extensions()
    counts = {"pictures": 0, "broken": 0, "other": 0}
    for index, fmt in enumerate(sorted(Image.SAVE)):
        ext = next((e for e, f in sorted(extensions.items()) if f == fmt), f".{fmt.lower()}")
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        if _save_any_mode(_picture(rng), folder / f"picture{ext}", fmt):
            counts["pictures" if fmt in RASTER_FORMATS or fmt == "MPO" else "other"] += 1
    animation = root / "a"
    frames = [_picture(rng) for _ in range(3)]
    frames[0].save(animation / "moving.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    frames[0].save(animation / "moving.apng", save_all=True, append_images=frames[1:], duration=50)
    frames[0].save(animation / "moving.webp", save_all=True, append_images=frames[1:], duration=50)
    counts["pictures"] += 3
    broken = root / "b"
    jpeg = io.BytesIO()
    _picture(rng).save(jpeg, "JPEG")
    (broken / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 3])
    (broken / "empty.png").write_bytes(b"")
    (broken / "page.jpg").write_text("<html>not a picture</html>")
    (broken / "garbage.tga").write_bytes(bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    counts["broken"] += 4
    for name in ("notes.txt", "data.bin", "README", ".DS_Store", "Thumbs.db", "photo.heic"):
        (root / "a" / name).write_bytes(b"\x00not an image")
        counts["other"] += 1
    return counts


@pytest.fixture(scope="module")
def every_format(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("every-format")
    return root, make_every_format_folder(root)


def _ignored(stderr: str) -> int:
    return sum(int(n) for n in re.findall(r"ignored (\d+) files? that are not images", stderr))


def test_every_still_format_pillow_writes_here_decodes(every_format: tuple[Path, dict[str, int]]) -> None:
    root, _ = every_format
    readable = [p for p in root.rglob("*") if p.name.startswith(("picture", "moving"))
                and Image.registered_extensions().get(p.suffix) in (*RASTER_FORMATS, "MPO")]
    assert len(readable) >= 20  # JPEG 2000, TGA, PCX, PPM, ICO, DDS, QOI, SGI, IM, XBM... all of them
    for path in readable:
        assert load_image(path).mode == "RGB"


def test_a_file_slower_to_decode_than_the_limit_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgcls.data import images

    path = tmp_path / "slow.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)).save(path)
    monkeypatch.setattr(images, "DECODE_SECONDS", 0.001)
    with pytest.raises(images.ImageLoadError, match="to decode") as raised:
        load_image(path)
    assert raised.value.kind == "too-slow"
    monkeypatch.undo()
    assert load_image(path).size == (1500, 1500)  # the same file within the real limit


@pytest.mark.slow
def test_predict_accounts_for_every_file(every_format: tuple[Path, dict[str, int]], tiny_run: Path) -> None:
    root, counts = every_format
    total = sum(1 for p in root.rglob("*") if p.is_file())
    result = run_cli("predict", tiny_run, root, "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    predicted = len(json.loads(result.stdout))
    skipped = result.stderr.count("skipped ")
    assert predicted == counts["pictures"] and skipped == counts["broken"]
    assert predicted + skipped + _ignored(result.stderr) == total
    assert "\r" not in result.stderr
    named = run_cli("predict", tiny_run, root, "--json", "--verbose").stderr
    assert f"ignored {root / 'a' / 'notes.txt'}" in named


@pytest.mark.slow
def test_doctor_accounts_for_every_file(every_format: tuple[Path, dict[str, int]]) -> None:
    root, counts = every_format
    total = sum(1 for p in root.rglob("*") if p.is_file())
    result = run_cli("doctor", root, "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    unusable = [p for p in report["problems"] if p["kind"] in ("corrupt", "not-an-image", "decompression-bomb",
                                                               "missing", "too-slow")]
    assert report["images"] == counts["pictures"] and len(unusable) == counts["broken"]
    assert report["images"] + len(unusable) + _ignored(result.stderr) == total
    assert "\r" not in result.stderr
