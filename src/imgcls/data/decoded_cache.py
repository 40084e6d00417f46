"""The decoded-image cache: decode every photo once, then augment from uint8 pixels every epoch.

Large JPEGs cost far more to decode than the network spends on them at 224 px. The cache decodes each
file once (JPEG draft mode: the decoder itself scales down by 2/4/8), resizes it so its shorter side is
``side`` (the eval resize size, e.g. 256 for a 224 input), and stores the uint8 pixels in one
memory-mapped file under ``$IMGCLS_CACHE/decoded/KEY``. Every epoch then only crops and flips uint8
tensors; normalisation happens on the whole batch after it reaches the device.

Layout: one fixed-size slot per image, ``side x ceil(1.5 * side) x 3`` bytes, with the image's real
height and width kept beside it. Photos up to 3:2 (either orientation) are stored whole, so
RandomResizedCrop sees the full frame; wider panoramas lose their outer edges to a centre crop. (A
square centre crop would be simpler but would throw away a quarter of every 4:3 photo.)

The key covers every file's path, size and modification time plus ``side`` and the layout, so a
changed, added or removed image, or another input size, builds a new entry instead of reusing a stale one.
"""

from __future__ import annotations

import json
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
from PIL import Image
from torch.utils.data import Dataset

from imgcls.cache import cache_dir, content_key
from imgcls.data.images import ImageLoadError, load_image
from imgcls.errors import DataError
from imgcls.runtime import usable_cpus

log = logging.getLogger(__name__)

LAYOUT = "slot-hwc-u8-v1"
MAX_ASPECT = 1.5  # 3:2 photos fit whole; wider ones are centre-cropped to this
IMAGES, SHAPES, META = "images.u8", "shapes.npy", "meta.json"


def slot_shape(side: int) -> tuple[int, int]:
    """(short, long) sides of one slot."""
    return side, math.ceil(side * MAX_ASPECT)


def slot_bytes(side: int) -> int:
    short, long = slot_shape(side)
    return short * long * 3


def cache_key(paths: Sequence[str], side: int) -> str:
    stats = []
    for path in paths:
        try:
            stat = os.stat(path)
            stats.append((str(path), stat.st_size, stat.st_mtime_ns))
        except OSError:
            stats.append((str(path), None, None))
    return content_key("decoded", LAYOUT, side, stats)


def decode_for_cache(path: str, side: int) -> np.ndarray:
    """HWC uint8 pixels with the shorter side ``side`` and the longer side at most 1.5x that."""
    image = load_image(path, draft_size=side)
    width, height = image.size
    scale = side / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    _, long = slot_shape(side)
    if max(size) > long:  # wider than 3:2: keep the centre
        left, top = (size[0] - long) // 2 if size[0] > long else 0, (size[1] - long) // 2 if size[1] > long else 0
        image = image.crop((left, top, left + min(size[0], long), top + min(size[1], long)))
    return np.asarray(image, dtype=np.uint8)


# building ---------------------------------------------------------------------------------------
_worker_images: np.memmap | None = None


def _open_for_writing(file: str, count: int, slot: int) -> None:
    global _worker_images
    _worker_images = np.memmap(file, dtype=np.uint8, mode="r+", shape=(count, slot))


def _decode_into_slots(job: tuple[list[int], list[str], int]) -> list[tuple[int, int, int, str]]:
    """Decode files straight into their slots (no pixels travel between processes)."""
    indices, paths, side = job
    assert _worker_images is not None
    done = []
    for index, path in zip(indices, paths):
        try:
            pixels = decode_for_cache(path, side)
        except ImageLoadError as exc:
            done.append((index, 0, 0, exc.detail))
            continue
        height, width = pixels.shape[:2]
        _worker_images[index, : pixels.size] = pixels.reshape(-1)
        done.append((index, height, width, ""))
    _worker_images.flush()
    return done


def build(paths: Sequence[str], side: int, folder: Path, workers: int) -> None:
    """Write the cache into ``folder`` (a temporary one; :func:`open_or_build` renames it into place)."""
    from imgcls.progress import Progress

    folder.mkdir(parents=True, exist_ok=True)
    count, slot = len(paths), slot_bytes(side)
    file = folder / IMAGES
    np.memmap(file, dtype=np.uint8, mode="w+", shape=(max(1, count), slot)).flush()
    shapes = np.zeros((count, 2), dtype=np.int32)
    chunk = 16
    jobs = [(list(range(i, min(i + chunk, count))), list(paths[i:i + chunk]), side) for i in range(0, count, chunk)]
    bar = Progress("decoding images into the cache", count)
    failed = []
    with ProcessPoolExecutor(max(1, workers), initializer=_open_for_writing,
                             initargs=(str(file), max(1, count), slot)) as pool:
        for done in pool.map(_decode_into_slots, jobs):
            for index, height, width, problem in done:
                shapes[index] = (height, width)
                if problem:
                    failed.append(f"{paths[index]} ({problem})")
            bar.update(len(done))
    bar.close()
    for item in failed:
        log.warning("skipped %s: cannot be decoded", item)
    np.save(folder / SHAPES, shapes)
    (folder / META).write_text(json.dumps({"layout": LAYOUT, "side": side, "count": count, "paths": list(paths)},
                                          ensure_ascii=False), encoding="utf-8")


def open_or_build(paths: Sequence[str], side: int, workers: int = 1) -> Path:
    """The cache folder for these files at this size, built first when missing."""
    key = cache_key(paths, side)
    folder = cache_dir("decoded", key)
    if (folder / META).is_file():
        return folder
    need = len(paths) * slot_bytes(side)
    free = shutil.disk_usage(_existing_parent(folder)).free
    if need > free * 0.9:
        raise DataError(f"the decoded-image cache needs {need / 2**30:.1f} GiB but {folder.parent} has "
                        f"{free / 2**30:.1f} GiB free; free space, point IMGCLS_CACHE elsewhere, or use --cache off")
    partial = folder.with_name(f"{key}.partial-{os.getpid()}")
    log.info("decoded-image cache: decoding %d images once at %d px (%.2f GiB) into %s",
             len(paths), side, need / 2**30, folder)
    try:
        build(paths, side, partial, workers)
        try:
            partial.rename(folder)
        except OSError:  # another process (a DDP peer) finished the same entry first
            if not (folder / META).is_file():
                raise
    except OSError as exc:
        raise DataError(f"cannot write the decoded-image cache in {folder.parent} ({exc.strerror or exc}); "
                        f"point IMGCLS_CACHE at a writable disk with space, or use --cache off") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _existing_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


# reading ----------------------------------------------------------------------------------------
class DecodedImageDataset(Dataset):
    """(uint8 CHW tensor, label) from a cache folder; ``transform`` crops/flips uint8 tensors.

    The memory map opens lazily in each process, so loader workers share the page cache instead of
    each receiving a pickled copy of the pixels.
    """

    def __init__(self, folder: Path, labels: Sequence[int], transform: Any):
        self.folder, self.labels, self.transform = Path(folder), list(labels), transform
        self.shapes = np.load(self.folder / SHAPES)
        meta = json.loads((self.folder / META).read_text(encoding="utf-8"))
        self.paths, self.side = meta["paths"], int(meta["side"])
        if len(self.shapes) != len(self.labels):
            raise DataError(f"the decoded-image cache {self.folder} does not match the data; delete it and retrain")
        self._images: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None}

    def pixels(self, index: int) -> torch.Tensor:
        """The cached uint8 image as a CHW tensor."""
        if self._images is None:
            self._images = np.memmap(self.folder / IMAGES, dtype=np.uint8, mode="r",
                                     shape=(max(1, len(self.labels)), slot_bytes(self.side)))
        height, width = (int(v) for v in self.shapes[index])
        hwc = np.array(self._images[index, : height * width * 3]).reshape(height, width, 3)
        return torch.from_numpy(hwc).permute(2, 0, 1)

    def __getitem__(self, index: int):  # noqa: ANN204
        for attempt in range(len(self.labels)):
            i = (index + attempt) % len(self.labels)
            if self.shapes[i][0] > 0:
                return self.transform(self.pixels(i)), self.labels[i]
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
    if need > shutil.disk_usage(_existing_parent(folder / "x")).free * 0.5:
        return False, f"it would need {need / 2**30:.1f} GiB, over half the free disk at {folder}"
    return True, f"large images (typical shorter side {typical_side} px) decode once instead of every epoch"


def cached_datasets(source: Any, pre: Any, augment: str, hflip: bool) -> tuple[Dataset, dict[str, Dataset]]:
    """Train and eval datasets of ``source`` (a DataSource of image files) read from the cache."""
    from imgcls.data.presets import UInt8EvalPreset, UInt8TrainPreset

    def dataset(split: str, transform: Any) -> Dataset:
        paths = source.paths(split)
        return DecodedImageDataset(open_or_build(paths, pre.resize_size, usable_cpus()), source.labels(split),
                                   transform)

    evals = {split: dataset(split, UInt8EvalPreset(pre)) for split in ("val", "test") if split in source.splits}
    return dataset("train", UInt8TrainPreset(pre, augment, hflip)), evals


def use_decoded_cache(config: Any, source: Any, pre: Any) -> bool:
    """Resolve ``--cache auto|on|off`` for this run, saying in the log what was decided and why."""
    paths = source.paths("train")
    typical = source.typical_size() if paths and config.cache == "auto" else None
    use, reason = should_cache(config.cache, paths, pre.resize_size, typical, config.epochs)
    log.info("decoded-image cache: %s (%s)", "on" if use else "off", reason)
    return use
