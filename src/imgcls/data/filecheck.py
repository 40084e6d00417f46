"""Checking image files one by one: header, full decode, content hash and perceptual hash.

One :class:`FileRecord` per file, computed in parallel worker processes and cached by (path, size,
modification time) in memory and under ``$IMGCLS_CACHE/filecheck``, so ``imgcls doctor`` and the
checks ``imgcls train`` runs first decode each file once, not once per command.

Near-duplicates are found with a perceptual hash (pHash: DCT of a 32x32 grey thumbnail, 64 bits, from
the ``imagehash`` package). On the hymenoptera photos it kept every pair of distinct photos >= 14 bits
apart while halving, re-compressing at JPEG quality 40 or brightening by 30% moved a photo <= 6 bits
(dHash: 9 and 15, wHash: 4 and 10), hence :data:`NEAR_DUPLICATE_BITS` = 8.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from imgcls.cache import DIGEST_BYTES, cache_dir, content_key
from imgcls.data.images import ImageLoadError, decode_image, open_image
from imgcls.runtime import usable_cpus

log = logging.getLogger(__name__)

CACHE_VERSION = 1
HASH_DRAFT_SIZE = 64  # JPEGs decode at 1/2..1/8 scale keeping both sides >= 64 px; pHash looks at 32x32
NEAR_DUPLICATE_BITS = 8  # pHash bits (of 64) within which two pictures count as the same photo
PARALLEL_MIN_FILES = 1000  # below this, starting worker processes costs more than it saves (measured)
FULL_CHECK_LIMIT = 50_000  # train decodes at most this many uncached files up front (doctor: all)

Progress = Callable[[int, int], None]


@dataclass
class FileRecord:
    """What one file is; ``kind`` is None when it can be used as an image."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    kind: str | None = None  # missing | not-an-image | decompression-bomb | corrupt
    detail: str = ""
    format: str | None = None
    mode: str | None = None  # as stored on disk, before conversion to RGB
    width: int = 0
    height: int = 0
    sha: str | None = None  # hash of the bytes: exact duplicates
    phash: str | None = None  # 16 hex digits, when decoded: near duplicates
    decoded: bool = False  # the pixels were decoded (not just the header read)

    @property
    def ok(self) -> bool:
        return self.kind is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FileRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def inspect_file(path: str, decode: bool = True) -> FileRecord:
    """Read one file (once), hash its bytes, read its header and, with ``decode``, its pixels."""
    record = FileRecord(path)
    try:
        stat = os.stat(path)
        record.size, record.mtime_ns = stat.st_size, stat.st_mtime_ns
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        record.kind, record.detail = "missing", f"cannot read the file ({exc.strerror})"
        return record
    record.sha = hashlib.blake2b(data, digest_size=DIGEST_BYTES).hexdigest()
    try:
        with open_image(data, name=path) as image:
            record.format, record.mode = image.format, image.mode
            record.width, record.height = image.size
            if decode:
                rgb = decode_image(image, path, draft_size=HASH_DRAFT_SIZE)
                record.phash = perceptual_hash(rgb)
                record.decoded = True
    except ImageLoadError as exc:
        record.kind, record.detail = exc.kind, exc.detail
    return record


def perceptual_hash(image) -> str:  # noqa: ANN001 - a PIL image
    import imagehash

    return str(imagehash.phash(image))


def _inspect_decoded(path: str) -> FileRecord:
    return inspect_file(path, decode=True)


def _inspect_header(path: str) -> FileRecord:
    return inspect_file(path, decode=False)


# caching ----------------------------------------------------------------------------------------
_memory: dict[str, FileRecord] = {}


def _shard_path(folder: str) -> Path:
    import PIL

    # Keyed by the decoders' version too: a Pillow upgrade may read a file differently.
    return cache_dir("filecheck", f"{content_key(CACHE_VERSION, PIL.__version__, os.path.abspath(folder))}.json")


def _read_shard(folder: str) -> dict[str, dict]:
    import json

    try:
        return json.loads(_shard_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_shards(records: Sequence[FileRecord]) -> None:
    from imgcls.rundir import write_json

    by_folder: dict[str, list[FileRecord]] = {}
    for record in records:
        if record.kind == "missing":  # may be a passing condition (permissions, a file being written)
            continue
        by_folder.setdefault(os.path.dirname(record.path), []).append(record)
    for folder, items in by_folder.items():
        shard = _read_shard(folder)
        shard.update({os.path.basename(r.path): r.to_dict() for r in items})
        try:
            write_json(_shard_path(folder), shard)
        except OSError as exc:  # a read-only cache only costs speed
            log.debug("file-check cache not written: %s", exc)
            return


def _fresh(record: FileRecord | None, size: int, mtime_ns: int, decode: bool) -> bool:
    return (record is not None and record.size == size and record.mtime_ns == mtime_ns
            and (record.decoded or not decode or not record.ok))


def _cached(paths: Sequence[str], decode: bool) -> dict[str, FileRecord]:
    """Records still valid for the files as they are now (same size and modification time)."""
    found: dict[str, FileRecord] = {}
    shards: dict[str, dict[str, dict]] = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        record = _memory.get(path)
        if not _fresh(record, stat.st_size, stat.st_mtime_ns, decode):
            folder = os.path.dirname(path)
            if folder not in shards:
                shards[folder] = _read_shard(folder)
            stored = shards[folder].get(os.path.basename(path))
            record = FileRecord.from_dict({**stored, "path": path}) if stored else None
        if _fresh(record, stat.st_size, stat.st_mtime_ns, decode):
            found[path] = record
    return found


# the pool ---------------------------------------------------------------------------------------
def default_workers() -> int:
    return min(8, usable_cpus())


def _pool(workers: int) -> ProcessPoolExecutor:
    # forkserver/spawn: forking a process that already runs torch's threads can deadlock the child.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def inspect_files(paths: Sequence[str], decode: bool = True, workers: int | None = None,
                  progress: Progress | None = None) -> list[FileRecord]:
    """A record per path, in order: from the cache where the file is unchanged, else computed
    (in worker processes when there are many)."""
    wait_for_background_check()
    return _inspect_files([str(p) for p in paths], decode, workers, progress)


_background: multiprocessing.process.BaseProcess | None = None


def check_in_background(paths: Sequence[str]) -> None:
    """Start decoding ``paths``' records in a forked process and return; the next :func:`inspect_files` waits
    for it and reads them from the cache it wrote. ``imgcls train`` starts it before torch, Lightning and timm
    load: importing them keeps one core busy for seconds, and the check fills the other (a thread would wait
    on the imports' GIL). Only where forking is safe: on Linux, before any thread starts; for up to
    ``PARALLEL_MIN_FILES`` files (more are checked in worker processes, with progress)."""
    global _background
    wait_for_background_check()
    # torch loaded means there are no imports left to overlap, and native threads a fork would copy
    if sys.platform != "linux" or threading.active_count() > 1 or "torch" in sys.modules:
        return
    paths = [str(p) for p in paths][:PARALLEL_MIN_FILES]
    _background = multiprocessing.get_context("fork").Process(target=_check_quietly, args=(paths,),
                                                              name="imgcls-filecheck", daemon=True)
    _background.start()


def _check_quietly(paths: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to report; it ends this daemon
    logging.disable(logging.INFO)  # the parent tells what its own check finds
    try:
        _inspect_files(paths, decode=True, workers=1, progress=None)
    except Exception:  # noqa: BLE001, S110 - the check that waits for this one repeats and reports it
        pass


def wait_for_background_check() -> None:
    global _background
    if _background is not None:
        _background.join()
        _background = None


def _inspect_files(paths: list[str], decode: bool, workers: int | None,
                   progress: Progress | None) -> list[FileRecord]:
    records = _cached(paths, decode)
    todo = [p for p in paths if p not in records]
    workers = default_workers() if workers is None else max(1, workers)
    task = _inspect_decoded if decode else _inspect_header
    done = len(paths) - len(todo)
    if progress:
        progress(done, len(paths))
    if todo:
        if len(todo) >= 500:
            log.info("checking %d image files (%s); results are cached for next time", len(todo),
                     "decoding each" if decode else "headers")
        if workers > 1 and len(todo) >= PARALLEL_MIN_FILES:
            with _pool(workers) as pool:
                results = pool.map(task, todo, chunksize=max(1, min(64, len(todo) // (workers * 8))))
                computed = _collect(results, records, done, len(paths), progress)
        else:
            computed = _collect(map(task, todo), records, done, len(paths), progress)
        _memory.update((r.path, r) for r in computed)
        _write_shards(computed)
    return [records[p] for p in paths]


def file_digests(paths: Sequence[str]) -> list[str | None]:
    """blake2b of each file's bytes (None: unreadable), the key of its cached features and decoded pixels.
    Taken from the file checks' records while a file keeps its size and modification time (as make, rsync
    and git's index recognise unchanged files), so a run over unchanged photos reads none of them again."""
    return [record.sha for record in inspect_files(paths, decode=False)]


def _collect(results, records: dict[str, FileRecord], done: int, total: int,  # noqa: ANN001
             progress: Progress | None) -> list[FileRecord]:
    computed = []
    for record in results:
        records[record.path] = record
        computed.append(record)
        done += 1
        if progress and (done % 16 == 0 or done == total):
            progress(done, total)
    return computed
