"""The decoded-image cache: decode each file once, keyed by its bytes and the size, augment from uint8 pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import decoded_cache as dc
from imgcls.data.filecheck import file_digests
from imgcls.data.presets import EvalPreset, Preprocess, UInt8EvalPreset, normalize_batch
from imgcls.data.source import resolve_data
from imgcls.errors import DataError

SIZES = [(300, 200), (200, 300), (600, 200), (120, 90)]  # landscape, portrait, panorama, small


def _pre(side: int, **kwargs) -> Preprocess:  # noqa: ANN003
    """A preprocessing whose eval resize size is ``side``."""
    return Preprocess(img_size=side, crop_pct=1.0, **kwargs)


def _photos(root: Path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for label, name in enumerate(["a", "b"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(SIZES):
            path = root / name / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
            paths.append(str(path))
    return paths


def test_each_image_keeps_its_shape_up_to_3_to_2(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "data")
    dataset = dc.DecodedImageDataset(dc.open_or_build(paths, _pre(64), workers=2), [0] * len(paths),
                                     transform=lambda x: x)
    shapes = [tuple(dataset.pixels(i).shape) for i in range(4)]
    assert shapes == [(3, 64, 96), (3, 96, 64), (3, 64, 96), (3, 64, 85)]  # the 3:1 panorama keeps its centre
    assert torch.equal(dataset.pixels(1),
                       torch.from_numpy(dc.decode_for_cache(paths[1], _pre(64)).copy()).permute(2, 0, 1))


def _decoded(caplog: pytest.LogCaptureFixture) -> int:
    """How many images the last open_or_build decoded (0 when none)."""
    lines = [r.getMessage() for r in caplog.records if "decoding" in r.getMessage()]
    caplog.clear()
    return int(lines[-1].split("decoding ")[1].split(" of ")[0]) if lines else 0


def test_only_files_never_seen_at_this_size_are_decoded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="imgcls")
    paths = _photos(tmp_path / "data")
    first = dc.open_or_build(paths[:6], _pre(48), workers=1)
    assert _decoded(caplog) == 6
    built_at = [e.stat().st_mtime_ns for e in first]
    # the same files again, in another order and split, moved to another class folder: nothing is decoded
    moved = Path(paths[0]).with_name("moved.jpg")
    Path(paths[0]).rename(moved)
    again = dc.open_or_build([*paths[1:6], str(moved)], _pre(48), workers=1)
    assert _decoded(caplog) == 0 and again == [*first[1:], first[0]]
    assert [e.stat().st_mtime_ns for e in first] == built_at
    # two more files: only they are decoded; another size: all of them
    assert len(dc.open_or_build([str(moved), *paths[1:]], _pre(48), workers=1)) == 8 and _decoded(caplog) == 2
    dc.open_or_build(paths[1:], _pre(56), workers=1)
    assert _decoded(caplog) == 7
    # a changed file gets a new entry; the old one is not read for it
    Image.new("RGB", (300, 200), "red").save(paths[1])
    (changed,) = dc.open_or_build([paths[1]], _pre(48), workers=1)
    assert _decoded(caplog) == 1 and changed != first[1]
    assert not list(dc.store_dir(_pre(48)).rglob("*.tmp"))


def test_undecodable_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "data")
    Path(paths[2]).write_bytes(b"not a jpeg at all")
    entries = dc.open_or_build(paths, _pre(32), workers=1)
    assert entries[2] is None and all(e is not None for i, e in enumerate(entries) if i != 2)
    dataset = dc.DecodedImageDataset(entries, list(range(len(paths))), transform=lambda x: x)
    assert dataset[2][1] == 3  # the broken one is replaced by the next readable sample
    entries[4].write_bytes(b"damaged since")  # an entry damaged after the build: that sample is skipped too
    assert dataset[4][1] == 5


@pytest.mark.parametrize("pre", [Preprocess(img_size=56, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                                            interpolation="bilinear"),
                                 Preprocess(img_size=45, interpolation="bicubic", crop_pct=0.9)])
def test_val_pixels_from_the_cache_are_those_predict_computes_from_the_file(tmp_path: Path, pre: Preprocess) -> None:
    """An epoch's val accuracy on the cache must be the one ``imgcls evaluate`` and ``predict`` then give."""
    from torchvision.transforms import v2

    from imgcls.data.images import load_image
    from imgcls.data.presets import eval_steps

    rng = np.random.default_rng(1)
    paths = []  # photos large enough to be decoded at reduced scale, 16:9 and wider in either orientation
    for i, (w, h, mode) in enumerate([(1200, 800, "RGB"), (800, 1200, "RGB"), (1601, 900, "RGB"), (900, 1603, "L"),
                                      (2005, 600, "RGB"), (121, 90, "RGB"), (40, 30, "L")]):
        path = tmp_path / f"{i}.jpg"
        smooth = Image.fromarray(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)).resize((w, h))
        smooth.convert(mode).save(path, quality=90)
        paths.append(str(path))
    dataset = dc.DecodedImageDataset(dc.open_or_build(paths, pre, workers=1), [0] * len(paths), UInt8EvalPreset(pre))
    from_file = v2.Compose(eval_steps(pre))
    for i, path in enumerate(paths):
        assert torch.equal(dataset[i][0], from_file(load_image(path, draft_size=pre.resize_size))), path
    cached = normalize_batch(torch.stack([dataset[i][0] for i in range(3)]), pre)
    reference = torch.stack([EvalPreset(pre)(load_image(p, draft_size=pre.resize_size)) for p in paths[:3]])
    assert cached.dtype == torch.float32 and cached.shape == (3, 3, pre.img_size, pre.img_size)
    assert torch.allclose(cached, reference, atol=1e-5)


def test_auto_caches_large_files_only() -> None:
    paths = ["x.jpg"] * 10
    assert dc.should_cache("auto", paths, 256, typical_side=1944, epochs=10)[0]
    assert not dc.should_cache("auto", paths, 256, typical_side=170, epochs=10)[0]
    assert not dc.should_cache("auto", paths, 256, typical_side=1944, epochs=1)[0]
    assert not dc.should_cache("on", None, 32, typical_side=None, epochs=10)[0]  # CIFAR arrays: nothing to decode
    assert dc.should_cache("on", paths, 256, typical_side=100, epochs=1)[0]
    assert not dc.should_cache("off", paths, 256, typical_side=1944, epochs=10)[0]


def test_yaml_on_and_off_are_cache_modes(tmp_path: Path) -> None:
    from imgcls.config import load_train_config

    (tmp_path / "c.yaml").write_text("cache: on\n")
    assert load_train_config(tmp_path / "c.yaml").cache == "on"
    assert load_train_config(tmp_path / "c.yaml", cache="off").cache == "off"


@pytest.mark.slow
def test_training_from_the_cache(tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from imgcls.config import load_train_config
    from imgcls.models.checkpoint import load_checkpoint
    from imgcls.training.fit import train

    config = load_train_config(data=str(tiny_data), model="small_cnn", epochs=1, batch_size=16, workers=0,
                               cache="on", out=str(tmp_path), name="cached")
    with caplog.at_level("INFO", logger="imgcls"):
        run = train(config)
    assert "decoded-image cache: on" in caplog.text
    assert len(run.read_metrics()["epochs"]) == 1 and run.file("best.pt").is_file()
    pre = load_checkpoint(run.file("best.pt")).preprocess
    paths = resolve_data(str(tiny_data)).paths("train")
    assert all(dc.entry_path(digest, pre).is_file() for digest in file_digests(paths))


def test_an_unwritable_cache_folder_turns_auto_off_and_on_into_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _photos(tmp_path / "data")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("IMGCLS_CACHE", str(blocked / "cache"))
    use, reason = dc.should_cache("auto", paths, 32, typical_side=1944, epochs=10)
    assert not use and "cannot be written" in reason
    with pytest.raises(DataError, match="cannot write the decoded-image cache.*--cache off"):
        dc.open_or_build(paths, _pre(32), workers=1)
