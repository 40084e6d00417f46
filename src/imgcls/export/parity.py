"""Does an exported model compute what the PyTorch model computes? Checked on the run's own
validation images when its data is at hand, else on random inputs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from imgcls.data.source import DataSource, label_map
from imgcls.inference.predictor import Predictor

log = logging.getLogger(__name__)

CHECK_BATCH = 16  # not the exporter's example batch size (2), so a batch size baked in by a trace shows


def _spread(count: int, limit: int) -> list[int]:
    """Up to ``limit`` indices spread evenly over ``range(count)`` (splits are sorted by class)."""
    if count <= limit:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, limit)})


@dataclass
class CheckInputs:
    """Preprocessed inputs to compare models on, with their labels in the model's class order."""

    dataset: Dataset
    description: str  # "153 val images" / "7 random inputs"
    labelled: bool

    def batches(self, batch_size: int = CHECK_BATCH) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from DataLoader(self.dataset, batch_size=batch_size, num_workers=0)


def check_inputs(predictor: Predictor, source: DataSource | None, split: str = "val", limit: int = 1000,
                 seed: int = 0) -> CheckInputs:
    """Up to ``limit`` images of ``split`` preprocessed as ``predictor`` expects; random inputs without data."""
    if source is not None and split in source.splits and getattr(source, "task", "single") == "multilabel":
        # Multi-hot targets have no top-1 to score; the probabilities are compared on the real images.
        dataset = source.dataset(split, predictor.transform, draft_size=predictor.preprocess.resize_size)
        indices = _spread(len(dataset), limit)
        return CheckInputs(_Unlabelled(Subset(dataset, indices)), f"{len(indices)} {split} images", False)
    if source is not None and split in source.splits and all(c in predictor.classes for c in source.classes):
        dataset = source.dataset(split, predictor.transform, draft_size=predictor.preprocess.resize_size)
        remap = torch.tensor(label_map(source.classes, predictor.classes))
        indices = _spread(len(dataset), limit)
        return CheckInputs(_Remapped(Subset(dataset, indices), remap), f"{len(indices)} {split} images", True)
    size = predictor.preprocess.img_size
    inputs = torch.randn(CHECK_BATCH + 3, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return CheckInputs(TensorDataset(inputs, torch.full((len(inputs),), -1)), f"{len(inputs)} random inputs", False)


class _Remapped(Dataset):
    """Labels of a dataset translated from the data's class order to the model's."""

    def __init__(self, dataset: Dataset, remap: torch.Tensor):
        self.dataset, self.remap = dataset, remap

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return image, int(self.remap[label])


class _Unlabelled(Dataset):
    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.dataset[index][0], -1


def calibration_batches(predictor: Predictor, source: DataSource | None, limit: int = 128) -> list[np.ndarray]:
    """Preprocessed training images (spread over all classes) for int8 calibration."""
    if source is None or "train" not in source.splits:
        return []
    inputs = check_inputs(predictor, source, "train", limit)
    return [images.numpy() for images, _ in inputs.batches()]


@dataclass
class Parity:
    """How an exported model's probabilities compare with the reference's on the same inputs."""

    images: int
    max_abs_diff: float
    top1_agreement: float  # share of inputs with the same top-1 class
    accuracy: float | None  # the exported model's top-1 accuracy (labelled inputs only)
    reference_accuracy: float | None
    ood_max_abs_diff: float | None = None  # of the OOD scores, for models that output them

    def to_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


class Reference:
    """The PyTorch model's probabilities on the check inputs, computed once for every comparison."""

    def __init__(self, predictor: Predictor, inputs: CheckInputs):
        self.inputs = inputs
        probs, labels, scores = [], [], []
        for images, target in inputs.batches():
            batch_probs, batch_scores = predictor.outputs(images)
            probs.append(batch_probs.numpy())
            scores.append(None if batch_scores is None else batch_scores.numpy())
            labels.append(target.numpy())
        self.probs, self.labels = np.concatenate(probs), np.concatenate(labels)
        self.scores = None if any(s is None for s in scores) else np.concatenate(scores)

    def compare(self, exported: Predictor) -> Parity:
        probs, scores = [], []
        for images, _ in self.inputs.batches():
            batch_probs, batch_scores = exported.outputs(images)
            probs.append(batch_probs.numpy())
            scores.append(None if batch_scores is None else batch_scores.numpy())
        probs = np.concatenate(probs)
        ood_diff = None
        if self.scores is not None and not any(s is None for s in scores):
            ood_diff = float(np.abs(np.concatenate(scores) - self.scores).max())
        agree = float((probs.argmax(1) == self.probs.argmax(1)).mean())
        accuracy = reference_accuracy = None
        if self.inputs.labelled:
            accuracy = float((probs.argmax(1) == self.labels).mean())
            reference_accuracy = float((self.probs.argmax(1) == self.labels).mean())
        return Parity(len(probs), float(np.abs(probs - self.probs).max()), agree, accuracy, reference_accuracy,
                      ood_diff)


@dataclass
class ExportResult:
    path: Path
    format: str
    quantize: str | None
    size_bytes: int
    seconds: float
    checked_on: str  # "153 val images" / "19 random inputs"
    tolerance: float
    parity: Parity  # of the float export against PyTorch
    int8: Parity | None = None  # of the int8 model against PyTorch
    source: str = ""
    predict_parity: Parity | None = None  # hf: against `imgcls predict`, which decodes large JPEGs at reduced scale

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "quantize": self.quantize,
                "size_bytes": self.size_bytes, "seconds": round(self.seconds, 2), "source": self.source,
                "checked_on": self.checked_on, "tolerance": self.tolerance, "parity": self.parity.to_dict(),
                "int8": self.int8.to_dict() if self.int8 else None,
                "predict_parity": self.predict_parity.to_dict() if self.predict_parity else None}
