"""Running a Predictor over a data split: labels, probabilities and metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from imgcls.data.source import DataSource, resolve_data
from imgcls.errors import DataError
from imgcls.evaluation.metrics import classification_metrics
from imgcls.inference.predictor import Predictor
from imgcls.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    split: str
    classes: list[str]
    labels: np.ndarray  # true labels, in the model's class order
    probs: np.ndarray  # (N, classes)
    paths: list[str] | None  # image files, None for array data (CIFAR)
    metrics: dict[str, Any]


def run_dir_of(model_path: str | Path) -> RunDir | None:
    """The run a model belongs to: the path itself, or the folder holding the checkpoint."""
    path = Path(model_path)
    for candidate in (path, path.parent):
        if RunDir.is_run_dir(candidate):
            return RunDir(candidate)
    return None


def data_for(model_path: str | Path, data: str | None) -> DataSource:
    """--data when given, else the data the run was trained on (with its recorded split)."""
    run = run_dir_of(model_path)
    if data is None:
        if run is None:
            raise DataError(f"{model_path} is not inside a run directory; pass --data DIR to say what to evaluate on")
        config = run.read_config()
        if not config.get("data"):
            raise DataError(f"{run.file(RunDir.CONFIG)} does not say what data the run used; pass --data DIR")
        return resolve_data(config["data"], val_split=config.get("val_split", 0.2), seed=config.get("seed", 42),
                            recorded_split=run.read_split())
    return resolve_data(data)


def _label_map(data_classes: list[str], model_classes: list[str]) -> list[int]:
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise DataError(f"the data has classes the model was not trained on: {', '.join(unknown)}; "
                        f"the model knows {', '.join(model_classes)} -- evaluate on data with those class folders")
    return [model_classes.index(c) for c in data_classes]


def evaluate_predictor(predictor: Predictor, source: DataSource, split: str = "val", batch_size: int = 64,
                       workers: int = 0) -> Evaluation:
    remap = torch.tensor(_label_map(source.classes, predictor.classes))
    dataset = source.dataset(split, predictor.transform, draft_size=predictor.preprocess.resize_size)
    if len(dataset) == 0:
        raise DataError(f"the {split} split of {source.spec} holds no images")
    labels, probs = [], []
    for batch, target in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        probs.append(predictor.probabilities(batch).numpy())
        labels.append(remap[target].numpy())
    label_array, prob_array = np.concatenate(labels), np.concatenate(probs)
    return Evaluation(split, predictor.classes, label_array, prob_array, source.paths(split),
                      classification_metrics(label_array, prob_array, predictor.classes))
