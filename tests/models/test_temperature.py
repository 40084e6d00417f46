"""Temperature scaling: recovers how overconfident logits are, and the cross-fitted ECE drops with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgcls.evaluation.calibration import calibrate, calibration, uncalibrated
from imgcls.models.temperature import cross_fitted_probabilities, fit_temperature


def overconfident(factor: float, count: int = 600, classes: int = 4, seed: int = 0):  # noqa: ANN201
    """Labels drawn from softmax(z), and logits z * factor: a model ``factor`` times too sure of itself."""
    generator = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(count, classes, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=generator).squeeze(1)
    return true_logits * factor, labels


def test_fitted_temperature_undoes_the_overconfidence() -> None:
    logits, labels = overconfident(3.0)
    assert abs(fit_temperature(logits, labels) - 3.0) < 0.6
    logits, labels = overconfident(0.5)  # underconfident: T below 1 sharpens
    assert abs(fit_temperature(logits, labels) - 0.5) < 0.15


def test_cross_fitted_ece_after_calibration_is_lower_than_before() -> None:
    logits, labels = overconfident(3.0)
    fit = calibrate(logits, labels, "val (600 images)")
    assert fit.ece_before > 0.1 and fit.ece < 0.05 and fit.ece < fit.ece_before
    assert set(fit.to_dict()) == {"temperature", "fitted_on", "ece_before", "ece"}


def test_the_reported_ece_hardly_depends_on_how_images_fall_into_folds() -> None:
    logits, labels = overconfident(2.0, count=153, classes=2)
    reported, single = [], []
    for seed in range(8):  # the same images in another order: another assignment to folds
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        reported.append(calibrate(logits[order], labels[order], "val").ece)
        single.append(calibration(labels[order].numpy(), cross_fitted_probabilities(logits[order], labels[order])).ece)
    assert np.std(reported) < 0.5 * np.std(single)


def test_uncalibrated_probabilities_undo_the_temperature() -> None:
    logits, labels = overconfident(3.0, count=50)
    raw = torch.softmax(logits.double(), dim=1).numpy()
    scaled = torch.softmax(logits.double() / 2.5, dim=1).numpy()
    np.testing.assert_allclose(uncalibrated(scaled, 2.5), raw, atol=1e-8)
    before = calibration(labels.numpy(), uncalibrated(scaled, 2.5)).ece
    assert before == pytest.approx(calibration(labels.numpy(), raw).ece, abs=1e-9)
