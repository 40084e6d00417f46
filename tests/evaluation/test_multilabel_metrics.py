"""Per-class thresholds, multi-label metrics and the error co-occurrence table on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from imgcls.evaluation.multilabel import MultiLabelEvaluation, choose_thresholds, multilabel_metrics
from imgcls.evaluation.multilabel_report import error_cooccurrence


def test_thresholds_separate_each_class_between_its_kept_and_next_score():
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probs = np.array([[0.30, 0.9], [0.25, 0.8], [0.10, 0.7], [0.05, 0.75]], dtype=np.float32)
    thresholds = choose_thresholds(targets, probs)
    assert thresholds[0] == pytest.approx((0.25 + 0.10) / 2)  # both positives kept, no negative
    assert ((probs >= thresholds) == targets.astype(bool))[:, 0].all()
    metrics = multilabel_metrics(targets, probs, thresholds, ["a", "b"], "val")
    assert metrics["per_class"]["a"]["f1"] == 1.0 and metrics["per_class"]["a"]["ap"] == 1.0
    assert metrics["per_class"]["b"]["ap"] < 1.0 and metrics["mAP"] == pytest.approx(
        (1.0 + metrics["per_class"]["b"]["ap"]) / 2)


def test_a_class_without_positives_keeps_one_half_and_is_left_out_of_map():
    targets = np.array([[1, 0], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.1, 0.7]])
    thresholds = choose_thresholds(targets, probs)
    assert thresholds[1] == 0.5
    metrics = multilabel_metrics(targets, probs, thresholds, ["a", "b"])
    assert metrics["per_class"]["b"]["ap"] is None and metrics["mAP"] == 1.0
    assert metrics["accuracy"] == 0.5  # the second image gets a label it does not show


def test_error_cooccurrence_pairs_missed_with_wrongly_added_labels():
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    probs = np.array([[0.1, 0.9, 0.0], [0.1, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 0.9]])
    evaluation = MultiLabelEvaluation("val", ["a", "b", "c"], targets, probs, None, {}, np.full(3, 0.5))
    matrix = error_cooccurrence(evaluation)
    assert matrix[0, 1] == 1  # a missed while b was added
    assert matrix[0, 3] == 1  # a missed, nothing added
    assert matrix[3, 2] == 1  # c added, nothing missed
    assert matrix.sum() == 3
