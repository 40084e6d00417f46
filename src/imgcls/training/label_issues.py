"""Training files whose label is probably wrong (``imgcls doctor --labels``, and ``imgcls train``).

Confident learning needs probabilities that did not see the label they judge: the train images'
embeddings (from the feature cache: a frozen backbone's, the run's own or the default pretrained one)
go through k-fold cross-validated logistic regression, so every image is scored by a head trained
on the other folds. cleanlab then flags the images whose given label those out-of-fold
probabilities disagree with, and ranks them by how unlikely the given label is, worst first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgcls.data.cifar import is_cifar10_spec
from imgcls.data.folders import data_folder, drop_empty_classes, scan_folder
from imgcls.data.source import DataSource
from imgcls.errors import DataError, ModelError

log = logging.getLogger(__name__)

KIND = "suspect-label"
DEFAULT_FOLDS = 5
RANK_BY = "self_confidence"  # cleanlab's ranking: the out-of-fold probability of the given label, lowest first
# Which images cleanlab flags. With 16 of the 245 full-size ants/bees training photos moved into the other
# class (benchmarks/suspect_labels.py, seeds 0-2), "predicted_neq_given" put 14, 13 and 14 of them among the
# first 24 suspects; the default "prune_by_noise_rate" flagged fewer images and found 13, 11 and 13.
FILTER_BY = "predicted_neq_given"
HEAD_C = 0.01  # strong L2 regularisation: a few hundred images, a thousand or more embedding dimensions


@dataclass
class SuspectLabel:
    """One training file whose label is probably wrong."""

    path: str
    given: str
    likely: str
    likely_prob: float  # out-of-fold probability of the likely class
    quality: float  # label quality score in [0, 1]: low means the given label is unlikely

    @property
    def detail(self) -> str:
        return (f"labelled '{self.given}' but looks like '{self.likely}' (out-of-fold probability "
                f"{self.likely_prob:.2f}; label quality {self.quality:.3f}): look at it and move it to "
                f"{self.likely}/ if it is one, or delete it if it is neither")

    def to_problem(self) -> tuple[str, str, str]:
        return self.path, KIND, self.detail

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "given": self.given, "likely": self.likely,
                "likely_prob": round(self.likely_prob, 4), "quality": round(self.quality, 4)}


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int = DEFAULT_FOLDS,
                              seed: int = 0, classes: list[str] | None = None) -> np.ndarray:
    """Probabilities (N, classes) of each sample from logistic regression fitted on the other folds;
    ``classes`` name them in errors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels)
    present = counts[counts > 0]
    if len(present) < 2:
        raise DataError("finding suspect labels needs at least two classes with images")
    folds = int(min(folds, present.min()))
    if folds < 2:
        smallest = int(np.flatnonzero(counts == present.min())[0])
        name = f"'{classes[smallest]}'" if classes and smallest < len(classes) else f"#{smallest}"
        raise DataError(f"finding suspect labels needs at least 2 images per class; class {name} has "
                        f"{present.min()}: add images to it")
    head = make_pipeline(StandardScaler(), LogisticRegression(C=HEAD_C, max_iter=3000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(head, features, labels, cv=splitter, method="predict_proba")
    full = np.zeros((len(labels), len(counts)), dtype=np.float64)
    full[:, np.flatnonzero(counts)] = probs  # classes without images get probability 0
    return full


def rank_label_issues(labels: np.ndarray, probs: np.ndarray, rank_by: str = RANK_BY) -> tuple[np.ndarray,
                                                                                               np.ndarray]:
    """(indices of suspect labels worst first, label quality score of every sample) by cleanlab."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    present = np.flatnonzero(np.bincount(labels, minlength=probs.shape[1]))
    # cleanlab wants labels 0..K-1 with every class present: drop the empty columns, renumber.
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    compact_labels, compact_probs = remap[labels], probs[:, present]
    compact_probs = compact_probs / compact_probs.sum(axis=1, keepdims=True)
    issues = find_label_issues(compact_labels, compact_probs, filter_by=FILTER_BY, return_indices_ranked_by=rank_by)
    quality = get_label_quality_scores(compact_labels, compact_probs, method=rank_by)
    return np.asarray(issues, dtype=int), quality


def suspect_labels(features: np.ndarray, labels: np.ndarray, paths: list[str], classes: list[str],
                   folds: int = DEFAULT_FOLDS, rank_by: str = RANK_BY, seed: int = 0) -> list[SuspectLabel]:
    """Suspect labels among samples with these embeddings, worst first."""
    labels = np.asarray(labels, dtype=int)
    probs = out_of_fold_probabilities(np.asarray(features, dtype=np.float64), labels, folds, seed, classes)
    issues, quality = rank_label_issues(labels, probs, rank_by)
    found = []
    for i in issues:
        given = int(labels[i])
        others = probs[i].copy()
        others[given] = -1
        likely = int(others.argmax())
        found.append(SuspectLabel(paths[i], classes[given], classes[likely], float(probs[i, likely]),
                                  float(quality[i])))
    return found


# the embeddings ----------------------------------------------------------------------------------
def _backbone(model: str | Path | None, num_classes: int) -> tuple[Any, Any, dict[str, Any], str]:
    """(network, preprocess, architecture dict, what it is) whose frozen backbone embeds the images."""
    from imgcls.models.factory import create_model
    from imgcls.training.features import supports_cached_features

    if model is None:
        created = create_model("efficientnet_lite0", num_classes, pretrained=True)
        network, preprocess, arch, name = created.model, created.preprocess, created.spec.to_dict(), \
            "efficientnet_lite0 (ImageNet weights)"
    else:
        from imgcls.inference.predictor import resolve_model_path
        from imgcls.models.checkpoint import load_checkpoint

        path = resolve_model_path(model)
        if path.suffix.lower() not in (".pt", ".pth", ".ckpt"):
            raise ModelError(f"--model {model}: suspect labels need the PyTorch checkpoint (its backbone embeds "
                             f"the images); pass the run directory or its best.pt")
        checkpoint = load_checkpoint(path)
        network, preprocess, arch, name = checkpoint.build(), checkpoint.preprocess, checkpoint.spec.to_dict(), \
            f"{checkpoint.spec.name} of {path}"
    if not supports_cached_features(network):
        raise ModelError(f"{name} has no forward_features/forward_head, so it cannot embed images; "
                         f"pass a timm or built-in model's run")
    return network, preprocess, arch, name


def train_split_source(data: str | Path) -> DataSource:
    """The files whose labels are checked, as the split "train": every image of train/ in a train-val
    folder (the same samples, so the same feature-cache entry, as training), of a class-folder one."""
    if is_cifar10_spec(data):
        raise DataError("suspect labels are found in folders of image files; CIFAR-10 comes as arrays")
    root = data_folder(data)
    folder = root / "train" if (root / "train").is_dir() else root
    if (folder / "labels.csv").is_file():
        raise DataError(f"{folder / 'labels.csv'}: suspect labels are looked for in single-label class folders; "
                        f"multi-label data (labels.csv) is not checked for them")
    scan = drop_empty_classes(scan_folder(folder))
    if len(scan.classes) < 2:
        raise DataError(f"finding suspect labels needs at least two class folders with images under {folder}")
    return DataSource(str(data), "train-val" if folder != root else "split", scan.classes,
                      {"train": scan.samples}, root=root, skipped=list(scan.skipped))


def find_suspect_labels(data: str | Path, model: str | Path | None = None, *, folds: int = DEFAULT_FOLDS,
                        rank_by: str = RANK_BY, batch_size: int = 64, workers: int = 0) -> list[SuspectLabel]:
    """Suspect labels of DATA's training files, worst first, from the embeddings of ``model``'s backbone
    (a run or checkpoint), or of the pretrained default model when ``model`` is None."""
    from imgcls.training.features import cached_features

    source = train_split_source(data)
    network, preprocess, arch, name = _backbone(model, len(source.classes))
    log.info("suspect labels: embedding %d training images with %s", len(source.labels("train")), name)
    features = cached_features(network, source, "train", preprocess, arch, batch_size=batch_size, workers=workers)
    return suspects_of_features(features.features.numpy(), source, folds=folds, rank_by=rank_by)


def suspects_of_features(features: np.ndarray, source: DataSource, folds: int = DEFAULT_FOLDS,
                         rank_by: str = RANK_BY) -> list[SuspectLabel]:
    """Suspect labels of ``source``'s train split from its (cached) embeddings, in the split's order."""
    paths = [str(Path(p)) for p in source.paths("train") or []]
    return suspect_labels(features, np.asarray(source.labels("train")), paths, source.classes, folds, rank_by)


def training_suspects(model: Any, source: DataSource, preprocess: Any, arch: dict[str, Any],
                      batch_size: int = 64) -> list[SuspectLabel] | None:
    """Suspect labels of a run's train split from the embeddings its frozen stage cached (a cache hit:
    seconds); None, with the reason logged, when the data cannot be judged (a class of one image)."""
    from imgcls.training.features import cached_features

    features = cached_features(model, source, "train", preprocess, arch, batch_size=batch_size)
    try:
        return suspects_of_features(features.features.numpy(), source)
    except DataError as exc:
        log.info("suspect labels: not looked for (%s)", exc)
        return None
