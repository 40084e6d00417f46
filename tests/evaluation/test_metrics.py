"""Metrics and calibration: the numbers people read must agree with each other and with the libraries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import multiclass_calibration_error

from imgcls.evaluation.calibration import calibration
from imgcls.evaluation.metrics import classification_metrics


def random_predictions(seed: int, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return rng.integers(0, classes, n), probs.astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), classes=st.integers(2, 8))
def test_accuracy_is_the_confusion_diagonal_share_and_support_sums_to_n(seed: int, n: int, classes: int) -> None:
    labels, probs = random_predictions(seed, n, classes)
    names = [f"c{i}" for i in range(classes)]
    m = classification_metrics(labels, probs, names)
    matrix = np.asarray(m["confusion_matrix"])
    assert matrix.shape == (classes, classes) and matrix.sum() == n
    assert m["accuracy"] == pytest.approx(np.trace(matrix) / n)
    assert sum(v["support"] for v in m["per_class"].values()) == n
    assert [v["support"] for v in m["per_class"].values()] == matrix.sum(axis=1).tolist()
    assert ("top5" in m) == (classes >= 5)
    if classes >= 5:
        assert m["accuracy"] <= m["top5"] <= 1


def test_top5_counts_a_hit_anywhere_in_the_five_likeliest() -> None:
    probs = np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05],   # true 4: rank 5 -> hit
                      [0.5, 0.2, 0.1, 0.1, 0.07, 0.03]])  # true 5: rank 6 -> miss
    m = classification_metrics(np.array([4, 5]), probs, list("abcdef"))
    assert m["accuracy"] == 0 and m["top5"] == 0.5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 80), classes=st.integers(2, 6))
def test_ece_equals_torchmetrics(seed: int, n: int, classes: int) -> None:
    labels, probs = random_predictions(seed, n, classes)
    ours = calibration(labels, probs, n_bins=10)
    theirs = multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels), num_classes=classes,
                                          n_bins=10, norm="l1")
    assert ours.ece == pytest.approx(float(theirs), abs=1e-5)
    assert sum(b.count for b in ours.bins) == n
    # The diagram's bins hold the accuracy: their weighted mean is the overall accuracy.
    accuracy = float((probs.argmax(1) == labels).mean())
    assert sum(b.count * b.accuracy for b in ours.bins) / n == pytest.approx(accuracy)


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident() -> None:
    # 10 images at 0.75 confidence, 3 of every 4 right within the bin -> calibrated.
    probs = np.tile([[0.75, 0.25]], (8, 1))
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 1])
    assert calibration(labels, probs).ece == pytest.approx(0.0)
    assert calibration(np.ones(8, dtype=int), np.tile([[0.99, 0.01]], (8, 1))).ece == pytest.approx(0.99)
