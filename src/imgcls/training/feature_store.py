"""Embeddings of single image files, keyed by the bytes of each file.

One store per feature space (architecture, backbone weights, preprocessing, view): a folder under
``$IMGCLS_CACHE/features`` of shard files, each an ``.npz`` of content digests and their float32
embeddings, written atomically (temp file + rename) once per extraction chunk. A reader sees a shard
whole or not at all, so no half-written entry is ever read back, and an interrupted extraction keeps
the chunks it finished. Many small shards are merged into one when they pile up.

Keying by content rather than by a split's file list means adding, removing, renaming or moving files
between class folders, or splitting differently, extracts only the files never seen in this space.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from imgcls.cache import cache_dir
from imgcls.rundir import atomic_write_bytes

log = logging.getLogger(__name__)

DIGEST_BYTES = 16
MERGE_AT = 16  # shards in one space before they are merged into one


def file_digest(path: str | os.PathLike) -> str | None:
    """blake2b of the file's bytes (hex), or None when it cannot be read."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


class FeatureStore:
    """The cached embeddings of one feature space (see the module docstring)."""

    def __init__(self, space: str):
        self.folder = cache_dir("features", space)

    def _shards(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if p.suffix == ".npz" and not p.name.startswith("."))
        except OSError:
            return []

    @staticmethod
    def _read(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, features = data["keys"], data["features"]
            if keys.ndim != 1 or features.ndim != 2 or len(keys) != len(features):
                raise ValueError("shapes do not match")
            return keys, features
        except FileNotFoundError:  # merged away by another process meanwhile
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged shard is only a cache miss
            log.warning("feature cache entry %s is unreadable (%s); its images are extracted again",
                        path, type(exc).__name__)
            return None

    def get(self, digests: Iterable[str]) -> dict[str, np.ndarray]:
        """Embeddings of those of ``digests`` that are stored."""
        wanted = {d.encode("ascii") for d in digests}
        found: dict[str, np.ndarray] = {}
        if not wanted:
            return found
        for shard in self._shards():
            read = self._read(shard)
            if read is None:
                continue
            keys, features = read
            for row in np.flatnonzero(np.isin(keys, np.array(sorted(wanted), dtype=keys.dtype))):
                found[keys[row].decode("ascii")] = features[row]
        return found

    def add(self, digests: list[str], features: np.ndarray) -> None:
        """Store embeddings (one row per digest) as a new shard; a cache that cannot be written is a
        warning, not an error: the features are in memory, only the next run extracts them again."""
        if not digests:
            return
        try:
            self._write(np.array(digests, dtype=f"S{2 * DIGEST_BYTES}"), np.asarray(features, dtype=np.float32))
            shards = self._shards()
            if len(shards) > MERGE_AT:
                self._merge(shards)
        except OSError as exc:
            log.warning("could not write the feature cache %s (%s); these features will be extracted again "
                        "next time", self.folder, exc.strerror or exc)

    def _write(self, keys: np.ndarray, features: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, keys=keys, features=features)
        atomic_write_bytes(self.folder / f"{uuid.uuid4().hex}.npz", buffer.getvalue())

    def _merge(self, shards: list[Path]) -> None:
        """One shard in place of many: written before the old ones go, so every entry stays readable."""
        parts = [read for read in map(self._read, shards) if read is not None]
        if not parts:
            return
        keys = np.concatenate([k for k, _ in parts])
        features = np.concatenate([f for _, f in parts])
        keys, first = np.unique(keys, return_index=True)
        self._write(keys, features[first])
        for shard in shards:
            shard.unlink(missing_ok=True)
