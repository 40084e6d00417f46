"""Running a Predictor over a data split: labels, probabilities and metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from imgcls.data.cifar import is_cifar10_spec
from imgcls.data.source import DataSource, label_map
from imgcls.errors import DataError
from imgcls.evaluation.calibration import Calibration, calibration, uncalibrated
from imgcls.evaluation.metrics import classification_metrics
from imgcls.evaluation.multilabel import evaluate_multilabel
from imgcls.inference.predictor import Predictor
from imgcls.rundir import RunDir
from imgcls.runtime import cpu_loader_workers

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    split: str
    classes: list[str]
    labels: np.ndarray  # true labels, in the model's class order
    probs: np.ndarray  # (N, classes)
    paths: list[str] | None  # image files, None for array data (CIFAR)
    metrics: dict[str, Any]  # the `evaluate --json` shape
    images: np.ndarray | None = None  # NHWC uint8 pictures of array data, for thumbnails
    tta: bool = False  # probabilities averaged over the image and its mirror
    ood_scores: np.ndarray | None = None  # out-of-distribution score per image, for models that have one
    calibration_info: dict[str, Any] | None = None  # the model's temperature and where it was fitted

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confidences(self) -> np.ndarray:
        return self.probs.max(axis=1)

    @property
    def losses(self) -> np.ndarray:
        """Cross-entropy of each image: high when the model was confidently wrong."""
        true_probs = self.probs[np.arange(len(self.labels)), self.labels]
        return -np.log(np.clip(true_probs, 1e-12, None))

    @cached_property
    def calibration(self) -> Calibration:
        return calibration(self.labels, self.probs)

    @property
    def temperature(self) -> float:
        return float((self.calibration_info or {}).get("temperature") or 1.0)

    @cached_property
    def calibration_before(self) -> Calibration | None:
        """Calibration of the probabilities before temperature scaling (None for an uncalibrated model)."""
        if not self.calibration_info:
            return None
        return calibration(self.labels, uncalibrated(self.probs, self.temperature))


def evaluate_predictor(predictor: Predictor, source: DataSource, split: str = "val", batch_size: int = 64,
                       workers: int | None = None, tta: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Probabilities and metrics of ``predictor`` on one split; ``tta`` averages each image with its mirror.

    ``workers`` decode images in parallel with the forward passes (default: up to 4, one core left free,
    none for a split of a single batch, where starting them costs more than they save). Multi-label data
    (labels.csv) gets a :class:`~imgcls.evaluation.multilabel.MultiLabelEvaluation`."""
    if source.task == "multilabel":
        return evaluate_multilabel(predictor, source, split, batch_size, workers, tta, progress)
    if getattr(predictor, "multilabel", False):
        raise DataError(f"{predictor.source} is a multi-label model; evaluate it on a folder with labels.csv "
                        f"(path,labels), not on class folders ({source.spec})")
    remap = torch.tensor(label_map(source.classes, predictor.classes))
    dataset = source.dataset(split, predictor.transform, draft_size=predictor.preprocess.resize_size)
    if len(dataset) == 0:
        raise DataError(f"the {split} split of {source.spec} holds no images")
    if workers is None:
        workers = cpu_loader_workers() if len(dataset) > batch_size else 0
    labels, probs, scores, done = [], [], [], 0
    for batch, target in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        batch_probs, batch_scores = predictor.outputs(batch)
        scores.append(batch_scores)
        if tta:  # flip the preprocessed tensor, so every backend (torch, ONNX, TorchScript) gets the same
            batch_probs = (batch_probs + predictor.probabilities(torch.flip(batch, dims=[3]))) / 2
        probs.append(batch_probs.numpy())
        labels.append(remap[target].numpy())
        done += len(target)
        if progress:
            progress(done, len(dataset))
    evaluation = _evaluation(source, split, predictor.classes, np.concatenate(labels), np.concatenate(probs), tta)
    evaluation.ood_scores = None if any(s is None for s in scores) else torch.cat(scores).numpy()
    evaluation.calibration_info = predictor.info.get("calibration")
    return evaluation


def evaluation_from_probabilities(probs: np.ndarray, classes: list[str], source: DataSource,
                                  split: str = "val") -> Evaluation:
    """The evaluation of probabilities computed elsewhere (one row per image of ``split``, in its order)."""
    remap = np.array(label_map(source.classes, classes))
    return _evaluation(source, split, classes, remap[np.asarray(source.labels(split))], probs)


def _evaluation(source: DataSource, split: str, classes: list[str], labels: np.ndarray, probs: np.ndarray,
                tta: bool = False) -> Evaluation:
    return Evaluation(split, classes, labels, probs, source.paths(split), classification_metrics(labels, probs, classes),
                      images=source.arrays[split][0] if split in source.arrays else None, tta=tta)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_.") or "data"


def default_report_dir(model_path: str | Path, split: str, data: str | None = None, tta: bool = False) -> Path:
    """Where ``imgcls evaluate`` writes its pictures when no --out is given.

    ``RUN/eval-SPLIT`` for a run (or its best.pt); other model files add their name
    (``RUN/eval-val-last.pt``, ``DIR/eval-val-model.onnx`` beside a file outside any run);
    --data other than the run's own adds the data's name, --tta adds ``-tta``.
    """
    path = Path(model_path)
    run = RunDir.of(path)
    parts = [split]
    if data is not None:
        cifar = is_cifar10_spec(data)
        parts.append(_slug("cifar10" if cifar else Path(data).expanduser().resolve().name))
    if run is None or (path.is_file() and path.name != RunDir.BEST):
        parts.append(_slug(path.name))
    if tta:
        parts.append("tta")
    return (run.path if run else path.parent) / ("eval-" + "-".join(parts))
