"""Per-file records: decoding, hashing, caching, and the pair search behind near-duplicates."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imgcls.data import filecheck, similar
from imgcls.data.filecheck import inspect_files


def _photo(path, size=(64, 48), seed=0):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)).resize(size).save(path)
    return str(path)


def test_records_describe_each_file(tmp_path):
    good = _photo(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_text("text")
    (tmp_path / "c.jpg").write_bytes(open(_photo(tmp_path / "c0.jpg"), "rb").read()[:300])
    ok, text, cut = inspect_files([good, str(tmp_path / "b.jpg"), str(tmp_path / "c.jpg")], workers=1)
    assert ok.ok and ok.decoded and ok.mode == "RGB" and (ok.width, ok.height) == (64, 48) and len(ok.phash) == 16
    assert (text.kind, cut.kind) == ("not-an-image", "corrupt")


def test_unchanged_files_come_from_the_cache_and_changed_ones_are_rechecked(tmp_path, monkeypatch):
    path = _photo(tmp_path / "a.png")
    first = inspect_files([path], workers=1)[0]
    filecheck._memory.clear()  # the disk cache alone must answer

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("decoded again")

    monkeypatch.setattr(filecheck, "_inspect_decoded", fail)
    assert inspect_files([path], workers=1)[0] == first
    _photo(path, size=(32, 32), seed=1)
    os.utime(path, ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    monkeypatch.undo()
    assert inspect_files([path], workers=1)[0].width == 32


def test_worker_processes_give_the_same_records(tmp_path, monkeypatch):
    paths = [_photo(tmp_path / f"{i}.png", seed=i) for i in range(6)]
    monkeypatch.setattr(filecheck, "PARALLEL_MIN_FILES", 2)
    parallel = inspect_files(paths, workers=2)
    filecheck._memory.clear()
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "fresh-cache"))
    assert [r.phash for r in inspect_files(paths, workers=1)] == [r.phash for r in parallel]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=40), st.integers(1, 64), st.integers(0, 20))
def test_near_pairs_match_brute_force_across_block_boundaries(values, block, max_bits):
    similar.BLOCK_ELEMENTS = block  # tiny blocks exercise the chunking
    try:
        found = {(i, j) for i, j, _ in similar.near_pairs(np.array(values, dtype=np.uint64), max_bits)}
    finally:
        similar.BLOCK_ELEMENTS = 1 << 22
    expected = {(i, j) for i in range(len(values)) for j in range(i + 1, len(values))
                if (values[i] ^ values[j]).bit_count() <= max_bits}
    assert found == expected


def test_flat_pictures_are_not_near_duplicates_of_each_other(tmp_path):
    paths = [tmp_path / "white.png", tmp_path / "black.png", tmp_path / "dot.png"]
    Image.new("RGB", (50, 50), "white").save(paths[0])
    Image.new("RGB", (50, 50), "black").save(paths[1])
    Image.new("RGB", (1, 1), "red").save(paths[2])
    records = {r.path: r for r in inspect_files([str(p) for p in paths], workers=1)}
    usable = {"train": {"a": [str(paths[0]), str(paths[2])], "b": [str(paths[1])]}}
    assert similar.duplicate_problems(usable, records) == []


BACKGROUND_CHECK = """
import json, sys
from pathlib import Path
from imgcls.data import filecheck, folders
root = Path(sys.argv[1])
folders.start_checking(root)
forked = filecheck._background is not None  # a fresh interpreter without torch: the check forks
paths = sorted(str(p) for p in root.rglob("*.*"))
records = [r.to_dict() for r in filecheck.inspect_files(paths, workers=1)]
print(json.dumps({"forked": forked, "records": records}))
"""


def _background_records(root, cache):  # noqa: ANN001, ANN202
    import json
    import subprocess
    import sys

    env = {**os.environ, "IMGCLS_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", BACKGROUND_CHECK, str(root)], env=env, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def test_the_check_begun_before_torch_loads_gives_the_records_of_a_plain_check(tmp_path):
    root = tmp_path / "data"
    for split, cls in (("train", "cat"), ("train", "dog"), ("val", "cat")):
        (root / split / cls).mkdir(parents=True)
        for i in range(3):
            _photo(root / split / cls / f"{i}.jpg", seed=i + len(cls))
    (root / "train" / "dog" / "text.jpg").write_text("not a picture")
    (root / "train" / "cat" / "cut.jpg").write_bytes((root / "val" / "cat" / "0.jpg").read_bytes()[:300])
    paths = sorted(str(p) for p in root.rglob("*.*"))
    filecheck._memory.clear()
    plain = [r.to_dict() for r in inspect_files(paths, workers=1)]
    assert {r["kind"] for r in plain} == {None, "not-an-image", "corrupt"}

    background = _background_records(root, tmp_path / "cache")
    assert background["forked"] and background["records"] == plain
    # a cache that cannot be written loses the background's work, not its answer
    (tmp_path / "not-a-folder").write_text("")
    unwritable = _background_records(root, tmp_path / "not-a-folder")
    assert unwritable["forked"] and unwritable["records"] == plain
