"""The per-file embedding store: entries found by content, shards merged without losing one, a full disk survived."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from imgcls.training import feature_store
from imgcls.data.filecheck import file_digests
from imgcls.training.feature_store import MERGE_AT, FeatureStore


def test_files_are_known_by_their_bytes_not_their_names(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"same bytes")
    (tmp_path / "b.jpg").write_bytes(b"same bytes")
    (tmp_path / "c.jpg").write_bytes(b"other bytes")
    a, b, c, missing = file_digests([str(tmp_path / name) for name in ("a.jpg", "b.jpg", "c.jpg", "missing.jpg")])
    assert a == b != c and missing is None


def test_an_unchanged_file_is_not_read_again_for_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"first bytes")
    stat = path.stat()
    (first,) = file_digests([str(path)])
    path.write_bytes(b"other bytes")  # same size; the modification time put back: taken as unchanged
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digests([str(path)]) == [first]
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: read again
    assert file_digests([str(path)]) != [first]


def test_many_shards_are_merged_into_one_and_every_entry_stays_readable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path))
    store = FeatureStore("space")
    rng = np.random.default_rng(0)
    written = {}
    for shard in range(MERGE_AT + 1):
        keys = [f"{shard:04d}{i:028d}" for i in range(3)]
        rows = rng.normal(size=(3, 5)).astype(np.float32)
        store.add(keys, rows)
        written.update(zip(keys, rows))
    assert len([p for p in store.folder.iterdir()]) == 1
    found = store.get(written)
    assert found.keys() == written.keys()
    for key, row in written.items():
        np.testing.assert_array_equal(found[key], row)
    assert store.get(["f" * 32]) == {}


def test_a_cache_that_cannot_be_written_is_a_warning_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path))

    def disk_full(path: Path, array: np.ndarray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(feature_store.np, "save", disk_full)
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        FeatureStore("space").add(["0" * 32], np.zeros((1, 4), dtype=np.float32))
    assert "No space left on device" in caplog.text
    assert FeatureStore("space").get(["0" * 32]) == {}
    assert not any(FeatureStore("space").folder.iterdir())  # nothing half-written left behind
