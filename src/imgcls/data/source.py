"""The three forms of DATA (README: Data), resolved into one :class:`DataSource`.

- ``DIR`` with ``train/`` and ``val/`` (optional ``test/``) class-folder trees;
- ``DIR`` of class folders only: split into train/val, stratified and seeded, recorded in split.json;
- ``cifar10`` or ``cifar10:PATH``: CIFAR-10 python batches (its test batch serves as val and test);
- ``DIR`` with ``labels.csv`` (or ``train/`` and ``val/`` with their own): multi-label, see ``labels_csv.py``.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imgcls.cache import cache_dir
from imgcls.config import config_of_run
from imgcls.data.cifar import cifar10_root, is_cifar10_spec, load_cifar10
from imgcls.data.folders import FolderScan, Sample, Skipped, data_folder, drop_empty_classes, scan_folder
from imgcls.data.images import ImageLoadError, load_image
from imgcls.data.labels_csv import labels_csv_of, read_labels_data
from imgcls.data.split import samples_from_record, split_record, stratified_split
from imgcls.errors import DataError
from imgcls.rundir import RunDir

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class ImageFileDataset(Dataset):
    """(image tensor, label) from image files. A file that fails to decode mid-training is named in a
    warning and replaced by the next readable sample, so one bad file never ends a run."""

    def __init__(self, samples: list[Sample], transform: Any, draft_size: int | None = None,
                 target_transform: Any = None):
        self.samples, self.transform, self.draft_size = samples, transform, draft_size
        self.target_transform = target_transform  # multi-label: class indices -> multi-hot vector

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):  # noqa: ANN204
        for attempt in range(len(self.samples)):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                image = self.transform(load_image(path, self.draft_size))
                return image, (self.target_transform(label) if self.target_transform else label)
            except ImageLoadError as exc:
                log.warning("skipped %s: %s", exc.path, exc.detail)
        raise DataError("no image in this split can be decoded")


class MultiHot:
    """Class indices -> a float multi-hot vector (the dataset's target transform)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, indices: tuple[int, ...]) -> torch.Tensor:
        target = torch.zeros(self.num_classes)
        target[list(indices)] = 1.0
        return target


class ArrayImageDataset(Dataset):
    """(image tensor, label) from an NHWC uint8 array, as CIFAR-10 comes."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):  # noqa: ANN204
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


@dataclass
class DataSource:
    """Classes and per-split samples of one DATA argument."""

    spec: str
    kind: str  # "train-val" | "split" | "cifar10" | "labels-csv"
    classes: list[str]
    files: dict[str, list[Sample]] = field(default_factory=dict)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    root: Path | None = None
    skipped: list[Skipped] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    split: dict[str, Any] | None = None  # split.json, when imgcls made the split
    task: str = "single"  # "multilabel": each sample's label is a tuple of class indices (labels.csv)

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if self.files.get(s) or s in self.arrays]

    def labels(self, split: str) -> list[int]:
        if split in self.arrays:
            return self.arrays[split][1].tolist()
        return [label for _, label in self.files.get(split, [])]

    def paths(self, split: str) -> list[str] | None:
        """Image file paths of ``split`` (None for array data)."""
        return None if split in self.arrays else [path for path, _ in self.files.get(split, [])]

    def counts(self, split: str) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for label in self.labels(split):
            for index in (label if self.task == "multilabel" else (label,)):
                counts[self.classes[index]] += 1
        return counts

    def dataset(self, split: str, transform: Any, draft_size: int | None = None) -> Dataset:
        if split not in self.splits:
            raise DataError(f"{self.spec} has no {split} split; it has {', '.join(self.splits)}")
        if split in self.arrays:
            return ArrayImageDataset(*self.arrays[split], transform)
        target = MultiHot(len(self.classes)) if self.task == "multilabel" else None
        return ImageFileDataset(self.files[split], transform, draft_size, target)

    def typical_size(self, sample: int = 64) -> int:
        """Median shorter side of (up to ``sample``) training images: a natural input size for
        nets trained from scratch, which have no pretrained size to keep."""
        if "train" in self.arrays:
            return int(self.arrays["train"][0].shape[1])
        paths = [path for path, _ in self.files.get("train", [])]
        step = max(1, len(paths) // sample)
        sides = []
        for path in paths[::step][:sample]:
            try:
                with Image.open(path) as image:
                    sides.append(min(image.size))
            except OSError:
                continue
        return int(statistics.median(sides)) if sides else 224


def _check_classes(scan: FolderScan, where: Path) -> FolderScan:
    if scan.empty_classes:
        log.warning("class folders without a single valid image are left out: %s", ", ".join(scan.empty_classes))
    scan = drop_empty_classes(scan)
    if not scan.samples:
        raise DataError(f"no images found in class folders under {where}; expected {where}/<class>/<image files>")
    if len(scan.classes) < 2:
        raise DataError(f"only one class ({scan.classes[0]}) found under {where}; "
                        f"a classifier needs at least two class folders")
    return scan


def _resolve_cifar(spec: str) -> DataSource:
    classes, arrays = load_cifar10(cifar10_root(spec, cache_dir()))
    return DataSource(spec, "cifar10", classes, arrays={"train": arrays["train"], "val": arrays["test"],
                                                        "test": arrays["test"]})


def label_map(data_classes: list[str], model_classes: list[str]) -> list[int]:
    """The model's index of each of the data's classes; :class:`DataError` when the model lacks one."""
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise DataError(f"the data has classes the model was not trained on: {', '.join(unknown)}; "
                        f"the model knows {', '.join(model_classes)} -- evaluate on data with those class folders")
    return [model_classes.index(c) for c in data_classes]


def resolve_data(spec: str | Path, val_split: float = 0.2, seed: int = 42,
                 recorded_split: dict[str, Any] | None = None) -> DataSource:
    """Find classes and samples for DATA. ``recorded_split`` (a run's split.json) reproduces its split."""
    spec = str(spec)
    if is_cifar10_spec(spec):
        return _resolve_cifar(spec)
    root = data_folder(spec)
    csvs = labels_csv_of(root)
    if csvs:
        found = read_labels_data(root, csvs, val_split, seed, recorded_split)
        return DataSource(spec, "labels-csv", found.classes, found.files, root=root, skipped=found.skipped,
                          split=found.split, task="multilabel")

    if (root / "train").is_dir():
        train = _check_classes(scan_folder(root / "train"), root / "train")
        source = DataSource(spec, "train-val", train.classes, {"train": train.samples}, root=root,
                            skipped=list(train.skipped), empty_classes=train.empty_classes)
        for split in ("val", "test"):
            if (root / split).is_dir():
                scan = scan_folder(root / split, classes=train.classes)
                source.files[split] = scan.samples
                source.skipped += scan.skipped
        if not source.files.get("val"):
            log.warning("%s has no val/ images; holding out %.0f%% of train/ for validation", root, val_split * 100)
            _split_into(source, root / "train", train.samples, val_split, seed, recorded_split)
        return source

    scan = _check_classes(scan_folder(root), root)
    source = DataSource(spec, "split", scan.classes, root=root, skipped=list(scan.skipped),
                        empty_classes=scan.empty_classes)
    _split_into(source, root, scan.samples, val_split, seed, recorded_split)
    return source


def _split_into(source: DataSource, root: Path, samples: list[Sample], val_split: float, seed: int,
                recorded: dict[str, Any] | None) -> None:
    if recorded:
        for split in ("train", "val", "test"):
            if recorded.get(split):
                source.files[split] = samples_from_record(root, recorded, split, source.classes)
        source.split = recorded
        return
    fractions = {"val": val_split}
    parts = stratified_split(samples, fractions, seed)
    source.files.update(parts)
    source.split = split_record(root, parts, source.classes, seed, fractions)


def data_for(model_path: str | Path, data: str | None) -> DataSource:
    """--data when given, else the data the run was trained on (with its recorded split)."""
    run = RunDir.of(model_path)
    if data is None:
        if run is None:
            raise DataError(f"{model_path} is not inside a run directory; pass --data DIR to say what to evaluate on")
        config = config_of_run(run.read_config(), run.file(RunDir.CONFIG))
        if not config.data:
            raise DataError(f"{run.file(RunDir.CONFIG)} does not say what data the run used; pass --data DIR")
        return resolve_data(config.data, val_split=config.val_split, seed=config.seed, recorded_split=run.read_split())
    return resolve_data(data)
