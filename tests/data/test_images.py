"""load_image: every odd-but-valid picture becomes 8-bit RGB; every broken file an ImageLoadError."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgcls.data.images import ImageLoadError, load_image, open_image
from imgcls.data.presets import EvalPreset, Preprocess
from tests.helpers import ANTS_BEES, messy_example

PHOTO = ANTS_BEES / "train" / "ants" / "0013035.jpg"


def encode(image: Image.Image, fmt: str, **options) -> bytes:  # noqa: ANN003
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rgb_of(data: bytes, **kwargs) -> np.ndarray:  # noqa: ANN003
    image = load_image(data, **kwargs)
    assert image.mode == "RGB"
    return np.asarray(image)


def test_transparent_pixels_become_white_not_black():
    rgba = Image.new("RGBA", (4, 4), (10, 200, 30, 255))
    rgba.putpixel((0, 0), (10, 200, 30, 0))
    pixels = rgb_of(encode(rgba, "PNG"))
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[1, 1]) == (10, 200, 30)


def test_palette_with_transparency_and_grey_with_alpha():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    pixels = rgb_of(encode(palette, "PNG", transparency=0))
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[2, 2]) == (200, 0, 0)
    la = Image.merge("LA", (Image.new("L", (3, 3), 40), Image.new("L", (3, 3), 255)))
    assert tuple(rgb_of(encode(la, "PNG"))[1, 1]) == (40, 40, 40)


@pytest.mark.parametrize("mode,value,expected", [
    ("I;16", 65535, 255), ("I;16", 0, 0), ("I;16", 32896, 128),
    ("I", 65535, 255), ("I", 200, 200), ("F", 1.0, 255), ("F", 0.5, 128),
])
def test_high_bit_depth_is_rescaled_to_8_bits(mode, value, expected):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    array = np.full((4, 4), value, dtype=dtype)
    array[0, 0] = 0  # not a flat picture
    image = Image.fromarray(array)
    assert image.mode == mode
    data = encode(image, "PNG" if mode == "I;16" else "TIFF")
    assert tuple(rgb_of(data)[2, 2]) == (expected,) * 3


def test_sixteen_bit_png_keeps_its_contrast():
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    pixels = rgb_of(encode(Image.fromarray(ramp), "PNG"))[..., 0].astype(int)
    assert pixels.min() == 0 and pixels.max() == round(63000 / 65535 * 255)
    assert np.all(np.diff(pixels.ravel()) >= 0)


def test_cmyk_grey_and_bilevel_jpeg_png_bmp():
    red = Image.new("RGB", (8, 8), (200, 30, 30))
    assert np.allclose(rgb_of(encode(red.convert("CMYK"), "JPEG", quality=95))[4, 4], (200, 30, 30), atol=12)
    assert set(rgb_of(encode(Image.new("L", (5, 5), 77), "JPEG"))[2, 2]) <= set(range(74, 81))
    bilevel = Image.new("1", (5, 5), 1)
    assert tuple(rgb_of(encode(bilevel, "BMP"))[0, 0]) == (255, 255, 255)


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    assert load_image(encode(stored, "JPEG", exif=exif)).size == (20, 40)


def test_loaded_files_are_closed_and_their_pixels_kept(tmp_path):
    """A folder of thousands of images must not run out of file handles, and the picture handed on must
    outlive the file: a rotated photo, an upright one, and the first frame of an animation."""
    import os

    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down
    gradient = Image.linear_gradient("L").resize((32, 16)).convert("RGB")
    (tmp_path / "rotated.jpg").write_bytes(encode(gradient, "JPEG", exif=exif, quality=95))
    (tmp_path / "upright.png").write_bytes(encode(gradient, "PNG"))
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    (tmp_path / "moving.gif").write_bytes(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    open_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    images = {path.name: load_image(path) for path in sorted(tmp_path.iterdir()) for _ in range(20)}
    if open_before is not None:
        assert len(os.listdir("/proc/self/fd")) == open_before
    upright = np.asarray(images["upright.png"])
    assert np.array_equal(upright, np.asarray(gradient))
    assert np.abs(np.asarray(images["rotated.jpg"]).astype(int) - upright[::-1, ::-1]).max() <= 8
    assert np.asarray(images["moving.gif"])[0, 0].tolist() == [255, 0, 0]


def test_tiny_images_still_make_model_input():
    for size in ((1, 1), (1, 300), (6, 8)):
        image = load_image(encode(Image.new("RGB", size, (9, 9, 9)), "PNG"))
        assert tuple(EvalPreset(Preprocess(img_size=32)).transform(image).shape) == (3, 32, 32)


def test_draft_decoding_shrinks_large_jpegs_but_not_below_the_size_asked():
    big = encode(Image.new("RGB", (1600, 1200), (1, 2, 3)), "JPEG")
    assert load_image(big, draft_size=256).size == (400, 300)  # 1/4 scale: 1/8 would go below 256
    assert load_image(big).size == (1600, 1200)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageLoadError, match="missing.jpg") as info:
        load_image(tmp_path / "missing.jpg")
    assert info.value.kind == "missing"


@pytest.mark.parametrize("data,kind", [
    (b"", "not-an-image"),
    ("개미 사진\n".encode(), "not-an-image"),
    (b"<!DOCTYPE html><html>403</html>", "not-an-image"),
    (PHOTO.read_bytes()[:4000], "corrupt"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "not-an-image"),  # never run Ghostscript
])
def test_broken_files_raise_image_load_error_with_kind(data, kind):
    with pytest.raises(ImageLoadError) as info:
        load_image(data)
    assert info.value.kind == kind


def test_decompression_bomb_is_refused_from_the_header_alone():
    bomb_png = messy_example().bomb_png

    with pytest.raises(ImageLoadError) as info:
        open_image(bomb_png())
    assert info.value.kind == "decompression-bomb"


# fuzzing: whatever the bytes, an ImageLoadError or an RGB image, quickly -------------------------
MAGIC = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
         b"P6\n", b"P5\n", b""]
FUZZ = settings(max_examples=150, deadline=timedelta(seconds=3), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _load_or_refuse(data: bytes) -> None:
    try:
        image = load_image(data, draft_size=64)
    except ImageLoadError as exc:
        assert exc.kind in {"not-an-image", "corrupt", "decompression-bomb"}
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=2048))
def test_fuzz_random_bytes_behind_real_magic_numbers(prefix, body):
    _load_or_refuse(prefix + body)


def _samples() -> list[bytes]:
    photo = Image.open(PHOTO).convert("RGB").resize((48, 36))
    return [PHOTO.read_bytes(), encode(photo, "PNG"), encode(photo.convert("P"), "GIF"), encode(photo, "BMP"),
            encode(photo, "TIFF"), encode(photo, "WEBP"), encode(photo.convert("RGBA"), "PNG"),
            encode(photo.convert("CMYK"), "JPEG")]


SAMPLES = _samples()


@FUZZ
@given(index=st.integers(0, len(SAMPLES) - 1), cut=st.floats(0, 1))
def test_fuzz_truncated_real_files(index, cut):
    data = SAMPLES[index]
    _load_or_refuse(data[: int(len(data) * cut)])


@FUZZ
@given(index=st.integers(0, len(SAMPLES) - 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)),
                                                             min_size=1, max_size=8))
def test_fuzz_corrupted_bytes_in_real_files(index, flips):
    data = bytearray(SAMPLES[index])
    for where, xor in flips:
        data[int(where * (len(data) - 1))] ^= xor
    _load_or_refuse(bytes(data))
