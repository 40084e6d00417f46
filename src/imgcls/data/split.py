"""Seeded, stratified splits of one class-folder tree, and ``imgcls split`` to write them out."""

from __future__ import annotations

import logging
import os
import random
import unicodedata
from collections import defaultdict
from pathlib import Path

from imgcls.data.folders import Sample, scan_folder
from imgcls.errors import ConfigError, DataError
from imgcls.rundir import atomic_copy, refused_writes

log = logging.getLogger(__name__)


def stratified_split(samples: list[Sample], fractions: dict[str, float], seed: int) -> dict[str, list[Sample]]:
    """Split per class so each part keeps the class proportions; the rest goes to "train".

    Each class with at least two images gives at least one image to every non-empty fraction,
    so no class is missing from validation just because it is small.
    """
    total = sum(fractions.values())
    if not 0 < total < 1:
        raise ConfigError(f"split fractions {fractions} must add up to more than 0 and less than 1")
    by_label: dict[int, list[Sample]] = defaultdict(list)
    for sample in sorted(samples):
        by_label[sample[1]].append(sample)
    rng = random.Random(seed)
    parts: dict[str, list[Sample]] = {"train": [], **{name: [] for name in fractions}}
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        start = 0
        for name, fraction in fractions.items():
            take = round(len(items) * fraction)
            if fraction > 0 and len(items) >= len(fractions) + 1:
                take = max(take, 1)
            take = min(take, len(items) - start - 1)  # keep at least one for training
            parts[name].extend(items[start:start + max(take, 0)])
            start += max(take, 0)
        parts["train"].extend(items[start:])
    return {name: sorted(part) for name, part in parts.items()}


def split_record(root: Path, parts: dict[str, list[Sample]], classes: list[str], seed: int,
                 fractions: dict[str, float]) -> dict:
    """What split.json holds: enough to rebuild the same split from the same folder."""
    return {
        "source": str(root),
        "seed": seed,
        "fractions": fractions,
        "classes": classes,
        **{name: [os.path.relpath(path, root) for path, _ in part] for name, part in parts.items()},
    }


def samples_from_record(root: Path, record: dict, split: str, classes: list[str]) -> list[Sample]:
    """The samples of ``split`` listed in a split.json, labelled by their class folder."""
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for relative in record.get(split, []):
        class_name = unicodedata.normalize("NFC", Path(relative).parts[0])
        if class_name in index:
            samples.append((str(root / relative), index[class_name]))
    return samples


def split_folder(src: str | Path, dst: str | Path, val: float = 0.2, test: float = 0.0, seed: int = 42,
                 copy: bool = False) -> dict[str, dict[str, int]]:
    """Write ``dst/train|val|test/<class>/`` from one class-folder tree; counts per split and class.

    Files are hard-linked where the file system allows (no extra space), else copied.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        what = "is a file, not a folder" if src.exists() else "not found"
        raise DataError(f"source folder {src} {what}; give a folder of class folders")
    if (src / "train").is_dir() and any((src / other).is_dir() for other in ("val", "test")):
        raise DataError(f"{src} is split already (train/ and val/ or test/); train on it as it is, or split "
                        f"{src / 'train'} alone")
    if dst.exists() and not dst.is_dir():
        raise DataError(f"--out {dst} is a file; choose a new --out folder")
    if dst.exists() and any(dst.iterdir()):
        raise DataError(f"output folder {dst} is not empty; choose a new --out folder")
    scan = scan_folder(src)
    for item in scan.skipped:  # not copied: name each one
        log.warning("skipped %s (%s): %s", item.path, item.kind, item.detail)
    if not scan.samples:
        raise DataError(f"no images found in class folders under {src}")
    fractions = {name: f for name, f in (("val", val), ("test", test)) if f > 0}
    parts = stratified_split(scan.samples, fractions, seed)
    counts: dict[str, dict[str, int]] = {}
    for split, samples in parts.items():
        counts[split] = dict.fromkeys(scan.classes, 0)
        for path, label in samples:
            target = dst / split / os.path.relpath(path, src)
            with refused_writes(target):
                target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                atomic_copy(path, target)
            else:
                try:
                    os.link(path, target)
                except OSError:
                    atomic_copy(path, target)
            counts[split][scan.classes[label]] += 1
    return counts
