"""Calibration: does a 90 % confident prediction come true 90 % of the time?

Expected calibration error (ECE) over equal-width confidence bins, as torchmetrics'
``multiclass_calibration_error`` computes it (tests hold the two equal; torchmetrics alone gives a
confidence of exactly 1.0 a bin of its own), plus the per-bin figures a reliability diagram draws.
The bins are computed here because the diagram needs them and torchmetrics keeps its binning private.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from imgcls.models.temperature import cross_fit_repeats, cross_fitted_probabilities, fit_temperature

DEFAULT_BINS = 10


@dataclass
class CalibrationBin:
    lower: float
    upper: float
    count: int
    confidence: float  # mean top-1 probability in the bin (0 when empty)
    accuracy: float  # share of correct top-1 predictions in the bin (0 when empty)


@dataclass
class Calibration:
    ece: float
    bins: list[CalibrationBin] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ece": self.ece, "bins": [asdict(b) for b in self.bins]}


def calibration(labels: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> Calibration:
    """ECE = sum over bins of (bin share of images) x |bin accuracy - bin mean confidence|.

    Bins are [k/n, (k+1)/n); a confidence of exactly 1.0 joins the top bin.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return Calibration(0.0, [])
    confidence = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    index = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(index, weights=correct, minlength=n_bins)
    filled = np.maximum(counts, 1)
    mean_conf, accuracy = conf_sum / filled, correct_sum / filled
    ece = float(np.sum(counts / len(labels) * np.abs(accuracy - mean_conf)))
    bins = [CalibrationBin(k / n_bins, (k + 1) / n_bins, int(counts[k]), float(mean_conf[k]), float(accuracy[k]))
            for k in range(n_bins)]
    return Calibration(ece, bins)


def uncalibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before temperature scaling: softmax(T * log p) undoes softmax(logits / T)."""
    if temperature == 1.0 or len(probs) == 0:
        return probs
    logits = temperature * np.log(np.clip(probs.astype(np.float64), 1e-30, None))
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class TemperatureFit:
    temperature: float
    fitted_on: str
    ece_before: float
    ece: float  # cross-fitted (mean over cross_fit_repeats() fold assignments): never on images its T saw

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "fitted_on": self.fitted_on,
                "ece_before": round(self.ece_before, 6), "ece": round(self.ece, 6)}


def calibrate(logits: torch.Tensor, labels: torch.Tensor, fitted_on: str) -> TemperatureFit:
    """T fitted on all of ``logits``; the ECE before and after (after by :func:`cross_fitted_probabilities`,
    the mean over :func:`cross_fit_repeats` assignments of the images to folds)."""
    labels_np = labels.numpy()
    before = calibration(labels_np, torch.softmax(logits.double(), dim=1).numpy()).ece
    after = float(np.mean([calibration(labels_np, cross_fitted_probabilities(logits, labels, seed=seed)).ece
                           for seed in range(cross_fit_repeats(len(labels_np)))]))
    return TemperatureFit(fit_temperature(logits, labels), fitted_on, before, after)


