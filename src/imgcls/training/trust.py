"""After training: the temperature that calibrates the best model and the threshold of its "unknown" answer,
both fitted on the val split and written into best.pt's metadata.

Which data: the val split, the only held-out data every run has. The temperature is fitted on all of it;
the ECE after calibration that the run reports is cross-fitted (each fifth of val scored with a temperature
fitted on the other four; the mean over ten assignments of images to fifths up to 2,000 images), so it is
never measured on images its temperature saw. The OOD statistics (class means of the embeddings) come
from train, the threshold from the val scores, so the accepted share of known images is measured on images
the statistics never saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from imgcls.config import TrainConfig
from imgcls.data.presets import EvalPreset, Preprocess, UInt8EvalPreset
from imgcls.data.source import DataSource
from imgcls.evaluation.calibration import TemperatureFit, calibrate
from imgcls.models.checkpoint import load_checkpoint, update_checkpoint_meta
from imgcls.models.ood import CLASS_MEAN, ENERGY, class_mean_distance, class_means, energy, ood_record
from imgcls.models.temperature import cross_fit_repeats
from imgcls.rundir import RunDir
from imgcls.training.callbacks import ValOutputs
from imgcls.training.features import (FeatureSet, cached_features, extract, head_matches_model,
                                      supports_cached_features)

log = logging.getLogger(__name__)

MIN_CALIBRATION_IMAGES = 10  # fewer held-out images cannot tell a temperature from noise
TRAIN_SAMPLE = 4096  # training images whose embeddings give the class means (all of them up to this many)


@dataclass
class Trust:
    calibration: TemperatureFit | None
    ood: dict
    val_probs: np.ndarray  # calibrated probabilities of the val split, in its order


def _spread(count: int, limit: int) -> list[int]:
    return list(range(count)) if count <= limit else sorted({int(i) for i in np.linspace(0, count - 1, limit)})


def backbone_trained(info: dict) -> bool:
    """Whether the checkpoint's backbone trained (its embeddings are in no feature cache yet)."""
    strategy = info.get("strategy")
    return strategy in ("scratch", "finetune") or (strategy == "staged" and int(info.get("stage", 0)) >= 1)


def _embeddings(model: nn.Module, source: DataSource, split: str, preprocess: Preprocess, arch: dict,
                workers: int, decoded: bool, limit: int | None = None) -> FeatureSet:
    """Embeddings of ``split`` (of ``limit`` images spread over it, when it has more). ``decoded``: the network
    trained from the decoded-image cache; its eval pixels are read from there (what the run's validation saw)
    instead of decoding each JPEG again (a quarter of this pass on full-size photos)."""
    count = len(source.labels(split))
    if decoded:
        from imgcls.data.decoded_cache import cached_dataset

        dataset = cached_dataset(source, preprocess, split, UInt8EvalPreset(preprocess))
    elif limit is None or count <= limit:  # a frozen backbone finds them in the feature cache
        return cached_features(model, source, split, preprocess, arch, workers=workers)
    else:
        dataset = source.dataset(split, EvalPreset(preprocess), draft_size=preprocess.resize_size)
    sample = limit is not None and count > limit
    return extract(model, Subset(dataset, _spread(count, limit)) if sample else dataset, 64, workers,
                   desc=f"features {split}" + (" (sample)" if sample else ""), preprocess=preprocess)


@torch.inference_mode()
def _val_logits(model: nn.Module, source: DataSource, preprocess: Preprocess, workers: int) -> FeatureSet:
    dataset = source.dataset("val", EvalPreset(preprocess), draft_size=preprocess.resize_size)
    logits, labels = [], []
    for images, target in DataLoader(dataset, batch_size=64, num_workers=workers):
        logits.append(model.eval()(images).float())
        labels.append(torch.as_tensor(target))
    return FeatureSet(torch.cat(logits), torch.cat(labels).long())


def fit_trust(run: RunDir, config: TrainConfig, source: DataSource, decoded: bool = False,
              validated: ValOutputs | None = None) -> Trust | None:
    """Fit calibration (unless ``config.calibrate`` is off) and the OOD threshold of ``run``'s best.pt,
    record both in it, and return them with the calibrated val probabilities (None without a val split).
    ``decoded``: the run trained from the decoded-image cache (its pixels are read from there); ``validated``:
    what training's validation computed, best.pt's epoch among it (its val embeddings are not computed again)."""
    if "val" not in source.splits or not source.labels("val"):
        return None
    best = load_checkpoint(run.best_checkpoint)
    model, preprocess, arch = best.build(), best.preprocess, best.spec.to_dict()
    workers = config.workers or 0
    probe = source.dataset("val", EvalPreset(preprocess), draft_size=preprocess.resize_size)
    means = None
    if supports_cached_features(model) and head_matches_model(model, probe):
        decoded = decoded and backbone_trained(best.info)
        kept = validated.of_epoch(best.info.get("epoch")) if validated is not None else None
        if kept is not None and len(kept.labels) == len(source.labels("val")):
            val, logits = FeatureSet(kept.features, kept.labels), kept.logits.float()
        else:
            val = _embeddings(model, source, "val", preprocess, arch, workers, decoded)
            with torch.inference_mode():
                logits = model.get_classifier()(val.features).float()
        train = _embeddings(model, source, "train", preprocess, arch, workers, decoded, limit=TRAIN_SAMPLE)
        means = class_means(train.features, train.labels, len(best.classes))
    else:
        val = _val_logits(model, source, preprocess, workers)
        logits = val.features
    fit = None
    if config.calibrate and len(val) >= MIN_CALIBRATION_IMAGES:
        fit = calibrate(logits, val.labels, f"val ({len(val)} images); ece after: 5-fold cross-fitted on val, "
                                             f"mean of {cross_fit_repeats(len(val))} fold assignments")
        log.info("calibration: temperature %.3f fitted on %d val images; ECE %.3f -> %.3f (cross-fitted)",
                 fit.temperature, len(val), fit.ece_before, fit.ece)
    elif config.calibrate:
        log.info("calibration skipped: %d val images are too few to fit a temperature (%d needed)", len(val),
                 MIN_CALIBRATION_IMAGES)
    temperature = fit.temperature if fit else 1.0
    if means is not None:
        scores = class_mean_distance(val.features, means)
        ood = ood_record(CLASS_MEAN, scores.numpy(), means=means)
    else:
        ood = ood_record(ENERGY, energy(logits, temperature).numpy())
    log.info("unknown answers: %s score above %.4f (accepts %.0f%% of the val images)", ood["method"],
             ood["threshold"], 100 * ood["accept_rate"])
    entries = {"ood": ood}
    if fit is not None:
        entries["calibration"] = fit.to_dict()
    update_checkpoint_meta(run.best_checkpoint, **entries)
    return Trust(fit, ood, torch.softmax(logits / temperature, dim=1).numpy())
