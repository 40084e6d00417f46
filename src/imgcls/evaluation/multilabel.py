"""Multi-label evaluation: per-class thresholds, precision/recall/F1/AP, macro and micro F1, mAP.

Thresholds are chosen per class to maximise F1 on held-out data (the val split, when training ends) and
stored in best.pt. Scores on the split they were chosen on are optimistic: ``evaluate --json`` says so
(``thresholds_from``) and gives the F1 at a fixed 0.5 beside them; a test split gives unbiased numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from imgcls.data.source import DataSource, label_map
from imgcls.errors import DataError
from imgcls.inference.predictor import Predictor
from imgcls.runtime import cpu_loader_workers

THRESHOLD_SPLIT = "val"


@dataclass
class MultiLabelEvaluation:
    split: str
    classes: list[str]
    targets: np.ndarray  # (N, classes) 0/1, in the model's class order
    probs: np.ndarray  # (N, classes) sigmoid scores
    paths: list[str] | None
    metrics: dict[str, Any]  # the `evaluate --json` shape
    thresholds: np.ndarray
    tta: bool = False
    task: str = "multilabel"

    @property
    def preds(self) -> np.ndarray:
        return (self.probs >= self.thresholds).astype(np.int64)


def choose_thresholds(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class, the threshold with the highest F1 on these scores (0.5 for a class without positives).

    The cut sits halfway between the lowest score kept and the next lower one, not on a score itself, so
    an unseen image scoring a little under the kept ones is not lost."""
    thresholds = np.full(targets.shape[1], 0.5, dtype=np.float32)
    for c in range(targets.shape[1]):
        positives = targets[:, c] > 0
        if not positives.any() or positives.all():
            continue
        scores = np.unique(probs[:, c])[::-1]  # candidate cuts, highest first
        best_f1, best_index = -1.0, 0
        for index, cut in enumerate(scores):
            predicted = probs[:, c] >= cut
            tp = float((predicted & positives).sum())
            f1 = 2 * tp / (predicted.sum() + positives.sum())
            if f1 > best_f1:
                best_f1, best_index = f1, index
        below = scores[best_index + 1] if best_index + 1 < len(scores) else 0.0
        thresholds[c] = (scores[best_index] + below) / 2
    return thresholds


def multilabel_metrics(targets: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, classes: list[str],
                       thresholds_from: str | None = None) -> dict[str, Any]:
    """accuracy (exact set match), macro_f1, micro_f1, mAP, per_class {precision, recall, f1, ap, support,
    threshold}, macro_f1_at_0.5 and where the thresholds come from."""
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

    targets = np.asarray(targets, dtype=np.int64)
    preds = (probs >= thresholds).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(targets, preds, average=None, zero_division=0)
    aps = [float(average_precision_score(targets[:, c], probs[:, c])) if targets[:, c].any() else None
           for c in range(len(classes))]
    scored = [ap for ap in aps if ap is not None]
    at_half = (probs >= 0.5).astype(np.int64)
    return {
        "task": "multilabel",
        "accuracy": float((preds == targets).all(axis=1).mean()) if len(targets) else 0.0,
        "macro_f1": float(f1_score(targets, preds, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(targets, preds, average="micro", zero_division=0)),
        "mAP": float(np.mean(scored)) if scored else 0.0,
        "macro_f1_at_0.5": float(f1_score(targets, at_half, average="macro", zero_division=0)),
        "thresholds_from": thresholds_from,
        "per_class": {name: {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                             "ap": aps[c], "support": int(support[c]), "threshold": round(float(thresholds[c]), 4)}
                      for c, name in enumerate(classes)},
    }


def model_targets(source: DataSource, split: str, model_classes: list[str]) -> np.ndarray:
    """The multi-hot targets of ``split`` in the model's class order."""
    columns = label_map(source.classes, model_classes)
    targets = np.zeros((len(source.labels(split)), len(model_classes)), dtype=np.int64)
    for row, indices in enumerate(source.labels(split)):
        targets[row, [columns[i] for i in indices]] = 1
    return targets


def multilabel_evaluation(predictor_classes: list[str], thresholds: np.ndarray, source: DataSource, split: str,
                          probs: np.ndarray, thresholds_from: str | None, tta: bool = False) -> MultiLabelEvaluation:
    targets = model_targets(source, split, predictor_classes)
    note = thresholds_from if thresholds_from else None
    metrics = multilabel_metrics(targets, probs, thresholds, predictor_classes, note)
    if note == split:
        metrics["note"] = (f"thresholds were chosen on this {split} split, so its F1 is optimistic; "
                           f"macro_f1_at_0.5 and mAP do not depend on them, a test split gives unbiased F1")
    return MultiLabelEvaluation(split, list(predictor_classes), targets, probs, source.paths(split), metrics,
                                thresholds, tta)


def split_probabilities(predictor: Predictor, source: DataSource, split: str, batch_size: int = 64,
                        workers: int | None = None, tta: bool = False,
                        progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Sigmoid scores (N, classes) of ``predictor`` on every image of ``split``, in its order."""
    if not predictor.multilabel:
        raise DataError(f"{source.spec} is multi-label data (labels.csv) but {predictor.source} is a single-label "
                        f"model; evaluate a model trained on labels.csv, or give --data a folder of class folders")
    dataset = source.dataset(split, predictor.transform, draft_size=predictor.preprocess.resize_size)
    if len(dataset) == 0:
        raise DataError(f"the {split} split of {source.spec} holds no images")
    if workers is None:
        workers = cpu_loader_workers() if len(dataset) > batch_size else 0
    probs, done = [], 0
    for batch, _ in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        batch_probs = predictor.probabilities(batch)
        if tta:
            batch_probs = (batch_probs + predictor.probabilities(torch.flip(batch, dims=[3]))) / 2
        probs.append(batch_probs.numpy())
        done += len(batch)
        if progress:
            progress(done, len(dataset))
    return np.concatenate(probs)


def evaluate_multilabel(predictor: Predictor, source: DataSource, split: str = "val", batch_size: int = 64,
                        workers: int | None = None, tta: bool = False,
                        progress: Callable[[int, int], None] | None = None) -> MultiLabelEvaluation:
    """Scores and metrics of a multi-label ``predictor`` on one split, at its stored thresholds."""
    probs = split_probabilities(predictor, source, split, batch_size, workers, tta, progress)
    return multilabel_evaluation(predictor.classes, predictor.thresholds, source, split, probs,
                                 predictor.info.get("thresholds_from"), tta)
