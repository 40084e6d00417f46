"""The OOD score and threshold: choosing a reject rate, and models without OOD data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from imgcls.models.ood import CLASS_MEAN, DeployedNet, class_mean_distance, class_means, deployed, ood_record, threshold_for


def test_threshold_accepts_the_stated_share_of_val_scores() -> None:
    scores = np.random.default_rng(0).random(200)
    record = ood_record(CLASS_MEAN, scores)
    assert (scores <= record["threshold"]).mean() >= 0.95
    assert threshold_for(record, 0.05) == record["threshold"]
    stricter = threshold_for(record, 0.2)
    assert stricter < record["threshold"] and abs((scores <= stricter).mean() - 0.8) < 0.02
    assert threshold_for(record, None) is None  # --no-reject
    assert threshold_for({}, 0.05) is None  # a model without OOD data never answers unknown


def test_class_mean_distance_is_zero_on_a_class_mean_and_large_far_away() -> None:
    embeddings = torch.tensor([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]])
    means = class_means(embeddings, torch.tensor([0, 0, 1, 1]), 2)
    distance = class_mean_distance(torch.cat([means, torch.tensor([[-1.0, -1.0]])]), means)
    assert torch.allclose(distance[:2], torch.zeros(2), atol=1e-6) and distance[2] > 1


def test_models_without_calibration_or_ood_data_run_as_they_are() -> None:
    model = nn.Linear(3, 2)
    assert deployed(model, {"epoch": 3}) is model
    wrapped = deployed(model, {"calibration": {"temperature": 2.0}, "ood": {"method": "energy", "threshold": 0.0}})
    assert isinstance(wrapped, DeployedNet)
    x = torch.randn(4, 3)
    logits, score = wrapped(x)
    assert torch.allclose(logits, model(x) / 2) and score.shape == (4,)
