"""The decoded-image cache: decode every photo once, then augment from uint8 pixels every epoch.

Large JPEGs cost far more to decode than the network spends on them at 224 px. The cache decodes each
file once (JPEG draft mode: the decoder itself scales down by 2/4/8), resizes it as evaluation does (the
shorter side to the eval resize size, e.g. 256 for a 224 input, with the model's interpolation), keeps its
longer side at most 1.5x that (3:2 photos, either orientation, stay whole so RandomResizedCrop sees the full
frame; wider ones, 16:9 phone photos among them, lose outer edges that the eval centre crop never reaches),
and keeps the uint8 pixels. Every epoch then only crops and flips uint8 tensors; normalisation happens on the
whole batch after it reaches the device. The val pixels read from the cache are those ``imgcls predict`` and
``evaluate`` compute from the file, bit for bit: the accuracy an epoch reports is the one the model has.

Layout: one ``.npy`` file (HWC uint8) per image under
``$IMGCLS_CACHE/decoded/LAYOUT-SIDE-CROP-INTERPOLATION/ab/DIGEST.npy``,
keyed by the digest of the file's bytes (as the feature cache is): adding, removing, renaming or moving
photos between class folders, or splitting differently, decodes only the files never seen at this size,
and a changed file gets a new entry. Each entry is written under a temporary name and renamed into place,
so a reader sees an image whole or not at all. A file that cannot be decoded gets no entry; its sample is
replaced by the next readable one and it is named in a warning.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from imgcls.cache import cache_dir
from imgcls.data.filecheck import file_digests
from imgcls.data.images import ImageLoadError, load_image
from imgcls.data.presets import Preprocess, UInt8EvalPreset, UInt8TrainPreset, eval_resize_steps
from imgcls.errors import DataError
from imgcls.runtime import usable_cpus

log = logging.getLogger(__name__)

LAYOUT = "file-hwc-u8-v3"
MAX_ASPECT = 1.5  # 3:2 photos fit whole; wider ones are centre-cropped to this


def slot_shape(side: int) -> tuple[int, int]:
    """(short, long) sides of the largest entry."""
    return side, math.ceil(side * MAX_ASPECT)


def slot_bytes(side: int) -> int:
    short, long = slot_shape(side)
    return short * long * 3


def store_dir(pre: Preprocess) -> Path:
    """The folder of every image decoded for ``pre``'s eval geometry."""
    return cache_dir("decoded", f"{LAYOUT}-{pre.resize_size}-{pre.img_size}-{pre.interpolation_mode.value}")


def entry_path(digest: str, pre: Preprocess) -> Path:
    return store_dir(pre) / digest[:2] / f"{digest}.npy"


def _kept_start(length: int, kept: int, crop: int) -> int:
    """Where to start keeping ``kept`` of ``length`` pixels so that a centre crop of ``crop`` from what is kept
    is the centre crop of ``crop`` from the whole (torchvision's rounding of each centre crop's offset)."""
    offset = int(round((length - crop) / 2.0)) - int(round((kept - crop) / 2.0))
    return min(max(0, offset), length - kept)


def decode_for_cache(path: str, pre: Preprocess) -> np.ndarray:
    """HWC uint8 pixels: the file resized as ``pre``'s evaluation does, the longer side at most 1.5x the shorter."""
    pixels = v2.Compose(eval_resize_steps(pre))(load_image(path, draft_size=pre.resize_size))
    _, long = slot_shape(pre.resize_size)
    height, width = pixels.shape[-2:]
    if height > long:
        top = _kept_start(height, long, pre.img_size)
        pixels = pixels[:, top:top + long]
    if width > long:
        left = _kept_start(width, long, pre.img_size)
        pixels = pixels[:, :, left:left + long]
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


def _free_bytes(folder: Path) -> int:
    """Free disk space where ``folder`` is, creating it (OSError: it cannot be created)."""
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free


# building ---------------------------------------------------------------------------------------
def _save_entry(pixels: np.ndarray, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as handle:
            np.save(handle, pixels, allow_pickle=False)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _decode_entries(job: tuple[list[tuple[str, str]], Preprocess]) -> list[tuple[str, str]]:
    """Decode (digest, path) pairs into their entries; returns (path, problem) of those that cannot be decoded.
    Each worker writes its own files: no pixels travel between processes."""
    pairs, pre = job
    failed = []
    for digest, path in pairs:
        try:
            pixels = decode_for_cache(path, pre)
        except ImageLoadError as exc:
            failed.append((path, exc.detail))
            continue
        _save_entry(pixels, entry_path(digest, pre))
    return failed


def build(todo: dict[str, str], pre: Preprocess, workers: int) -> None:
    """Decode ``todo`` (digest -> one path with that content) into ``pre``'s store."""
    from imgcls.progress import Progress

    pairs = list(todo.items())
    chunk = 16
    jobs = [(pairs[i:i + chunk], pre) for i in range(0, len(pairs), chunk)]
    bar = Progress("decoding images into the cache", len(pairs))
    failed: list[tuple[str, str]] = []
    # one thread per worker process: the workers already fill the cores, and torch's resize would otherwise start
    # a thread per core in each of them
    with ProcessPoolExecutor(max(1, min(workers, len(jobs))), initializer=torch.set_num_threads,
                             initargs=(1,)) as pool:
        for job, problems in zip(jobs, pool.map(_decode_entries, jobs)):
            failed += problems
            bar.update(len(job[0]))
    bar.close()
    for path, problem in failed:
        log.warning("skipped %s: cannot be decoded (%s)", path, problem)


def open_or_build(paths: Sequence[str], pre: Preprocess, workers: int = 1) -> list[Path | None]:
    """Each file's entry for ``pre`` (None: unreadable), decoding first the files that have none."""
    digests = file_digests(paths)
    entries = [None if d is None else entry_path(d, pre) for d in digests]
    todo = {d: p for d, p, e in zip(digests, paths, entries) if e is not None and not e.is_file()}
    if todo:
        folder, side = store_dir(pre), pre.resize_size
        need = len(todo) * slot_bytes(side)
        try:
            free = _free_bytes(folder)
            if need > free * 0.9:
                raise DataError(f"the decoded-image cache needs {need / 2**30:.1f} GiB but {folder} has "
                                f"{free / 2**30:.1f} GiB free; free space, point IMGCLS_CACHE elsewhere, or use "
                                f"--cache off")
            log.info("decoded-image cache: decoding %d of %d images once at %d px (%.2f GiB at most) into %s",
                     len(todo), len(paths), side, need / 2**30, folder)
            build(todo, pre, workers)
        except OSError as exc:
            raise DataError(f"cannot write the decoded-image cache in {folder} ({exc.strerror or exc}); "
                            f"point IMGCLS_CACHE at a writable disk with space, or use --cache off") from None
    return [e if e is not None and e.is_file() else None for e in entries]


# reading ----------------------------------------------------------------------------------------
class DecodedImageDataset(Dataset):
    """(uint8 CHW tensor, label) from the entries :func:`open_or_build` returned; ``transform`` crops/flips
    uint8 tensors. Loader workers read the entries through the page cache, shared between processes."""

    def __init__(self, entries: Sequence[Path | None], labels: Sequence[int], transform: Any):
        self.entries, self.labels, self.transform = list(entries), list(labels), transform
        if len(self.entries) != len(self.labels):
            raise DataError("the decoded-image cache does not match the data; retrain, or use --cache off")

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, index: int) -> torch.Tensor:
        """The cached uint8 image as a CHW tensor."""
        entry = self.entries[index]
        assert entry is not None, "an unreadable file has no entry"
        return torch.from_numpy(np.load(entry, allow_pickle=False)).permute(2, 0, 1)

    def __getitem__(self, index: int):  # noqa: ANN204
        for attempt in range(len(self.labels)):
            i = (index + attempt) % len(self.labels)
            if self.entries[i] is not None:
                try:
                    return self.transform(self.pixels(i)), self.labels[i]
                except (OSError, ValueError) as exc:  # removed or damaged since: that sample is skipped
                    log.warning("decoded-image cache entry %s is unreadable (%s); skipped",
                                self.entries[i], type(exc).__name__)
                    self.entries[i] = None
        raise DataError("no image in this split can be decoded")


# when to use it ---------------------------------------------------------------------------------
def should_cache(mode: str, paths: Sequence[str] | None, side: int, typical_side: int | None,
                 epochs: int) -> tuple[bool, str]:
    """Whether to train from the cache, and why (for the log).

    ``auto`` caches image files whose typical shorter side is well above ``side`` (decoding then
    dominates each sample's cost) when training sees them more than once and the cache fits on disk.
    """
    if mode == "off":
        return False, "--cache off"
    if paths is None:
        return False, "the data is already decoded in memory"
    if mode == "on":
        return True, "--cache on"
    if epochs < 2:
        return False, "one epoch decodes each image once anyway"
    if typical_side is None or typical_side < 1.25 * side:
        return False, f"images are small (typical shorter side {typical_side} px vs {side} px input)"
    folder = cache_dir("decoded")
    need = len(paths) * slot_bytes(side)
    try:
        free = _free_bytes(folder)
    except OSError as exc:
        return False, f"{folder} cannot be written ({exc.strerror or exc}); IMGCLS_CACHE chooses another folder"
    if need > free * 0.5:
        return False, f"it would need {need / 2**30:.1f} GiB, over half the free disk at {folder}"
    return True, f"large images (typical shorter side {typical_side} px) decode once instead of every epoch"


def cached_dataset(source: Any, pre: Any, split: str, transform: Any) -> Dataset:
    """``split`` of ``source`` (a DataSource of image files) read from the cache through ``transform``."""
    return DecodedImageDataset(open_or_build(source.paths(split), pre, usable_cpus()),
                               source.labels(split), transform)


def cached_datasets(source: Any, pre: Any, augment: str, hflip: bool) -> tuple[Dataset, dict[str, Dataset]]:
    """Train and eval datasets of ``source`` read from the cache."""
    evals = {split: cached_dataset(source, pre, split, UInt8EvalPreset(pre)) for split in ("val", "test")
             if split in source.splits}
    return cached_dataset(source, pre, "train", UInt8TrainPreset(pre, augment, hflip)), evals


def use_decoded_cache(config: Any, source: Any, pre: Any) -> bool:
    """Resolve ``--cache auto|on|off`` for this run, saying in the log what was decided and why."""
    paths = source.paths("train")
    typical = source.typical_size() if paths and config.cache == "auto" else None
    use, reason = should_cache(config.cache, paths, pre.resize_size, typical, config.epochs)
    log.info("decoded-image cache: %s (%s)", "on" if use else "off", reason)
    return use
