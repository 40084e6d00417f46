"""Which images a report shows (worst mistakes, a sample of predictions) and their thumbnails."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgcls.data.images import ImageLoadError, load_image
from imgcls.evaluation.evaluate import Evaluation

THUMB_SIZE = 96  # pixels, longest side: small JPEGs keep report.html light


@dataclass
class ShownImage:
    """One image of a gallery: what it is, what the model said, and a thumbnail data URI."""

    index: int
    name: str  # file name, or "#index" for array data
    path: str  # full path ("" for array data)
    true: str
    predicted: str
    confidence: float  # probability of the predicted class
    true_prob: float  # probability the model gave the true class
    loss: float
    thumbnail: str | None  # data URI; None when the file can no longer be read
    overlay: str | None = None  # data URI of a Grad-CAM overlay, when the report has one

    @property
    def correct(self) -> bool:
        return self.true == self.predicted


def worst_mistakes(evaluation: Evaluation, limit: int = 24) -> list[int]:
    """Indices of wrong predictions, highest loss (most confidently wrong) first."""
    wrong = np.flatnonzero(evaluation.preds != evaluation.labels)
    return wrong[np.argsort(-evaluation.losses[wrong], kind="stable")][:limit].tolist()


def sample_predictions(evaluation: Evaluation, limit: int = 24, seed: int = 0) -> list[int]:
    """A seeded sample of every class, grouped by class; with more classes than slots, classes spread evenly."""
    rng = np.random.default_rng(seed)
    per_class = max(1, limit // max(1, len(evaluation.classes)))
    chosen: list[int] = []
    for label in range(len(evaluation.classes)):
        members = np.flatnonzero(evaluation.labels == label)
        if len(members):
            chosen.extend(sorted(rng.choice(members, min(per_class, len(members)), replace=False).tolist()))
    if len(chosen) > limit:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
    return chosen


def file_thumbnail(path: str, draft_size: int) -> Image.Image | None:
    """The picture of an image file (decoded at about ``draft_size``), None when it cannot be read."""
    try:
        return load_image(path, draft_size=draft_size)
    except ImageLoadError:
        return None


def thumbnail_uri(evaluation: Evaluation, index: int, size: int = THUMB_SIZE) -> str | None:
    """A small JPEG of image ``index`` as a data URI: from its file, or from the arrays (CIFAR)."""
    if evaluation.images is not None:
        image = Image.fromarray(evaluation.images[index])
    elif evaluation.paths is not None:
        image = file_thumbnail(evaluation.paths[index], size)
        if image is None:
            return None
    else:
        return None
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def shown_images(evaluation: Evaluation, indices: list[int]) -> list[ShownImage]:
    losses, preds = evaluation.losses, evaluation.preds
    shown = []
    for i in indices:
        path = evaluation.paths[i] if evaluation.paths is not None else ""
        shown.append(ShownImage(
            index=i, name=Path(path).name if path else f"#{i}", path=path,
            true=evaluation.classes[evaluation.labels[i]], predicted=evaluation.classes[preds[i]],
            confidence=float(evaluation.probs[i, preds[i]]), true_prob=float(evaluation.probs[i, evaluation.labels[i]]),
            loss=float(losses[i]), thumbnail=thumbnail_uri(evaluation, i)))
    return shown
