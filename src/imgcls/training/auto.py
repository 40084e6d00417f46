"""``--auto``: a search over recipes within ``--time-budget``, cheapest first; the winner becomes the run.

1. Heads on the cached features (seconds each): an Optuna study over the learning rate, weight decay,
   label smoothing and epochs, each trial scored by stratified k-fold on the
   train embeddings (held-out loss). Today's defaults are its first trial and stay on the board.
2. Then, where the data suggest it, the rest of the budget covers a trial plus the final training, and
   the best head leaves enough held-out images wrong for another recipe to show a gain: a small net
   from scratch (tiny images), fine-tuning, staged -- each trained on most of train and scored on a
   held-out part of it.
The val split the run reports is never looked at. Settings given explicitly are never searched.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.config import TrainConfig, update_config
from imgcls.data.datamodule import class_weights
from imgcls.data.profile import DataProfile
from imgcls.data.source import DataSource
from imgcls.data.split import stratified_split
from imgcls.models.factory import CreatedModel, create_model
from imgcls.rundir import RunDir
from imgcls.training.features import cached_features
from imgcls.training.setup import mirror_features, resolve_config, run_name, use_feature_cache

log = logging.getLogger(__name__)

SCRATCH_NET = "small_cnn"
HEAD_TRIALS = 40
# The study stops once this many trials in a row found no lower held-out loss: on a few hundred images
# the loss surface of a linear head is flat near its best, and later trials only repeat earlier ones.
HEAD_PATIENCE = 12
HEAD_SHARE = 0.15  # of the budget, at most, for the head study
HELD_OUT = 0.2  # share of train held out to score recipes trained on images
# Recipes on images are tried only while the best head leaves at least this many of the held-out images
# wrong: a better recipe can win back at most those, and a count of 3 varies by +-1.7 with the split alone.
MIN_HELD_OUT_ERRORS = 3.0
# A training step costs about this many forward passes of the same images (backward pass, decoding,
# augmentation, validation); used to tell whether a recipe fits the budget before trying it.
TRAIN_PASS_COST = 3.5


@dataclass
class Candidate:
    recipe: str
    config: TrainConfig
    accuracy: float
    heldout: str
    seconds: float
    loss: float | None = None  # held-out cross-entropy, for heads (breaks accuracy ties)


def describe(config: TrainConfig) -> str:
    if config.strategy != "feature-extraction":
        return f"{config.model} {config.strategy}, {config.epochs} epochs at lr {config.lr:.3g}"
    mirrored = mirror_features(config)
    return (f"{config.model} head: lr {config.lr:.3g}, weight decay {config.weight_decay:.3g}, label smoothing "
            f"{config.label_smoothing:.2f}, {config.epochs} epochs, mirrored copies {'on' if mirrored else 'off'}")


# heads on cached features ------------------------------------------------------------------------
def _folds(labels: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(labels).min())
    k = max(2, min(5, smallest))
    with warnings.catch_warnings():
        # A class with one training image sits in one fold's held-out part; that is as good as it gets, and the
        # data checks have already named the class.
        warnings.filterwarnings("ignore", message="The least populated class in y has only", category=UserWarning)
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)),
                                                                                        labels))


def head_accuracy(features: torch.Tensor, labels: torch.Tensor, mirrored: torch.Tensor | None,
                  folds: list[tuple[np.ndarray, np.ndarray]], settings: dict[str, Any], config: TrainConfig,
                  weights: torch.Tensor | None) -> tuple[float, float]:
    """(held-out accuracy, mean held-out cross-entropy) of a linear head trained as ``settings`` say on each
    fold's rest.

    The k heads train side by side as one (k, D, C) weight: Adam and SGD update each element on its own,
    so this is k separate trainings, in k times fewer (and larger) steps -- a linear head's step on a few
    hundred embeddings costs its Python overhead, not its arithmetic."""
    classes, size = int(labels.max()) + 1, config.batch_size
    pool, pool_labels = features, labels
    rows = [torch.as_tensor(train_index) for train_index, _ in folds]
    if mirrored is not None and settings["mirror"]:  # each fold's rows, and the same rows mirrored
        pool, pool_labels = torch.cat([features, mirrored]), torch.cat([labels, labels])
        rows = [torch.cat([r, r + len(labels)]) for r in rows]
    k, longest = len(rows), max(len(r) for r in rows)
    batches = math.ceil(longest / size)
    torch.manual_seed(config.seed)
    init = nn.Linear(features.shape[1], classes)
    weight = nn.Parameter(init.weight.detach().t().expand(k, -1, -1).clone())  # (k, D, C)
    bias = nn.Parameter(init.bias.detach().expand(k, -1).clone())  # (k, C)
    make = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.AdamW
    extra = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    optimizer = make([weight, bias], lr=settings["lr"], weight_decay=settings["weight_decay"], **extra)
    total = settings["epochs"] * batches
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / max(1, total))))
    generator = torch.Generator().manual_seed(config.seed)
    padded = batches * size
    for _ in range(settings["epochs"]):
        # each fold's rows in a fresh order, padded with -1 to the same number of batches
        order = torch.full((k, padded), -1, dtype=torch.long)
        for f, r in enumerate(rows):
            order[f, :len(r)] = r[torch.randperm(len(r), generator=generator)]
        for b in range(batches):
            pick = order[:, b * size:(b + 1) * size]
            valid = (pick >= 0).float()
            x, y = pool[pick.clamp(min=0)], pool_labels[pick.clamp(min=0)]
            logits = torch.baddbmm(bias.unsqueeze(1), x, weight)
            each = F.cross_entropy(logits.reshape(-1, classes), y.reshape(-1), weight=weights, reduction="none",
                                   label_smoothing=settings["label_smoothing"]).view_as(valid)
            share = valid * (weights[y] if weights is not None else 1.0)  # what a mean over the batch divides by
            loss = ((each * valid).sum(1) / share.sum(1).clamp(min=1e-12)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for f, (_, test_index) in enumerate(folds):
            logits = features[test_index] @ weight[f] + bias[f]
            correct += int((logits.argmax(1) == labels[test_index]).sum())
            loss_sum += float(F.cross_entropy(logits, labels[test_index], reduction="sum"))
    return correct / len(labels), loss_sum / len(labels)


def search_heads(config: TrainConfig, explicit: set[str], source: DataSource, created: CreatedModel,
                 seconds: float) -> list[Candidate]:
    """The default head and the best of an Optuna study, scored by k-fold on the train embeddings.

    Mirrored copies of the train images are used only where the flags given ask for them: in the studies
    on ants/bees (lite0 and lite2 features) and on the zoo's photo, tiny and imbalanced sets they never won,
    and they cost a second forward pass over train."""
    import optuna

    start = time.perf_counter()
    settings = {"batch_size": 2 * config.batch_size, "workers": config.workers}
    arch = created.spec.to_dict()
    mirror = bool(explicit & {"hflip", "augment"}) and mirror_features(config)
    plain = cached_features(created.model, source, "train", created.preprocess, arch, mirrored=mirror, **settings)
    mirrored = plain.mirrored
    features, labels = plain.features.float(), plain.labels.long()
    folds = _folds(labels.numpy(), config.seed)
    weights = (class_weights(labels.tolist(), len(source.classes)) if config.balance == "loss" else None)
    extracted = time.perf_counter() - start
    default = {"lr": float(config.lr), "weight_decay": config.weight_decay,
               "label_smoothing": config.label_smoothing, "epochs": config.epochs, "mirror": mirror}

    def objective(trial: optuna.Trial) -> float:
        chosen = {
            "lr": default["lr"] if "lr" in explicit else trial.suggest_float("lr", 1e-4, 3e-2, log=True),
            "weight_decay": (default["weight_decay"] if "weight_decay" in explicit
                             else trial.suggest_float("weight_decay", 1e-5, 0.3, log=True)),
            "label_smoothing": (default["label_smoothing"] if "label_smoothing" in explicit
                                else trial.suggest_float("label_smoothing", 0.0, 0.2)),
            "epochs": default["epochs"] if "epochs" in explicit else trial.suggest_int("epochs", 5, 30, log=True),
            "mirror": mirror,
        }
        trial.set_user_attr("settings", chosen)
        accuracy, loss = head_accuracy(features, labels, mirrored, folds, chosen, config, weights)
        trial.set_user_attr("accuracy", accuracy)
        # The held-out loss, not the accuracy, is what the study minimises: on a few hundred images accuracy
        # moves in steps of single pictures and rewards lucky recipes; the loss ranks them smoothly.
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    searched = {k: v for k, v in default.items() if not (k in explicit or k == "mirror")}
    study.enqueue_trial(searched)
    study.optimize(objective, n_trials=HEAD_TRIALS, timeout=max(5.0, seconds - extracted),
                   callbacks=[_stop_on_plateau])
    held = f"{len(folds)}-fold on train features"
    first = study.trials[0]
    per_trial = (time.perf_counter() - start - extracted) / max(1, len(study.trials))
    found = [Candidate(describe(_head_config(config, first.user_attrs["settings"])) + " (defaults)",
                       _head_config(config, first.user_attrs["settings"]), first.user_attrs["accuracy"], held,
                       extracted + per_trial, first.value)]
    best = study.best_trial
    if best.number != first.number:
        found.append(Candidate(describe(_head_config(config, best.user_attrs["settings"]))
                               + f" (lowest held-out loss of {len(study.trials)} Optuna trials)",
                               _head_config(config, best.user_attrs["settings"]), best.user_attrs["accuracy"], held,
                               time.perf_counter() - start, best.value))
    log.info("auto: %d head recipes in %.1f s (features %.1f s); held-out loss %.3f, accuracy %.3f (defaults "
             "%.3f, %.3f)", len(study.trials), time.perf_counter() - start, extracted, best.value,
             best.user_attrs["accuracy"], first.value, first.user_attrs["accuracy"])
    return found


def _stop_on_plateau(study: Any, trial: Any) -> None:
    if trial.number - study.best_trial.number >= HEAD_PATIENCE:
        study.stop()


def _head_config(config: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    mirror_view = {"augment": "standard", "hflip": True} if settings["mirror"] else (
        {"augment": "light"} if config.augment == "standard" else {})
    return update_config(config, lr=settings["lr"], weight_decay=settings["weight_decay"],
                         label_smoothing=settings["label_smoothing"], epochs=settings["epochs"], **mirror_view)


# recipes trained on images -----------------------------------------------------------------------
def held_out_source(source: DataSource, seed: int) -> DataSource:
    """The train split alone, a stratified part of it standing in for val."""
    if "train" in source.arrays:
        images, labels = source.arrays["train"]
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(labels))
        cut = int(len(labels) * HELD_OUT)
        held, rest = order[:cut], order[cut:]
        return DataSource(source.spec, source.kind, source.classes,
                          arrays={"train": (images[rest], labels[rest]), "val": (images[held], labels[held])})
    parts = stratified_split(source.files["train"], {"val": HELD_OUT}, seed)
    return DataSource(source.spec, source.kind, source.classes, files={"train": parts["train"], "val": parts["val"]},
                      root=source.root)


def image_trial(config: TrainConfig, holdout: DataSource, fit: Callable[..., Any]) -> float:
    """Best held-out accuracy of ``config`` trained on ``holdout``'s train part (a throwaway run) by ``fit``
    (training/fit.py's, which calls this search: passed in, so the search does not import its caller)."""
    created = create_model(config.model, len(holdout.classes), pretrained=config.pretrained, weights=config.weights,
                           img_size=config.img_size, cifar_stem=config.cifar_stem)
    with tempfile.TemporaryDirectory(prefix="imgcls-auto-") as scratch:
        trial = update_config(config, logger=["none"], patience=None, out=scratch)
        run = RunDir.create(scratch, "trial")
        run.write_config(trial.model_dump())
        run.write_classes(holdout.classes)
        fit(trial, holdout, created, run, report=False)
        return float(run.read_metrics().get("best_val_acc") or 0.0)


def image_candidates(original: TrainConfig, explicit: set[str], profile: DataProfile,
                     source: DataSource) -> list[tuple[str, TrainConfig]]:
    """Recipes on images the data suggest, cheapest first."""
    given = {name: getattr(original, name) for name in explicit}
    wanted: list[tuple[str, dict[str, Any]]] = []
    if profile.tiny:
        wanted.append(("scratch", {"model": SCRATCH_NET, "strategy": "scratch"}))
    wanted += [("finetune", {"strategy": "finetune"}), ("staged", {"strategy": "staged"})]
    found = []
    for _, change in wanted:
        config = resolve_config(TrainConfig(**{**given, **change}), source, profile, announce=False)
        found.append((describe(config), config))
    return found


def forward_seconds(config: TrainConfig, classes: int, batch: int = 8) -> float:
    """Seconds per image of one forward pass of ``config``'s network at its input size, on this machine."""
    created = create_model(config.model, classes, pretrained=False, img_size=config.img_size,
                           cifar_stem=config.cifar_stem)
    size = created.preprocess.img_size
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    model = created.model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(images[:2])
        began = time.perf_counter()
        model(images)
    return (time.perf_counter() - began) / batch


def image_cost(config: TrainConfig, images: int, classes: int) -> float:
    """Seconds a recipe on images should take: its epochs that train the network, each image passing
    forward and backward (TRAIN_PASS_COST forward passes)."""
    tuned = config.epochs - (config.head_epochs or 0) if config.strategy == "staged" else config.epochs
    return tuned * images * forward_seconds(config, classes) * TRAIN_PASS_COST


def choose(candidates: list[Candidate], held_out: int) -> Candidate:
    """The best head (held-out accuracy, then the lower held-out loss), unless a recipe on images got at least
    one more of the ``held_out`` images right: a smaller gain is within the luck of the split, and the head
    is the cheaper recipe. Ties between recipes on images go to the faster one."""
    heads = [c for c in candidates if c.loss is not None]
    on_images = [c for c in candidates if c.loss is None]
    head = max(heads, key=lambda c: (c.accuracy, -(c.loss or 0.0), -c.seconds), default=None)
    image = max(on_images, key=lambda c: (c.accuracy, -c.seconds), default=None)
    if image is not None and (head is None or image.accuracy >= head.accuracy + 1 / max(1, held_out) - 1e-9):
        return image
    assert head is not None
    return head


def search(original: TrainConfig, config: TrainConfig, source: DataSource, created: CreatedModel,
           profile: DataProfile, fit: Callable[..., Any]) -> tuple[TrainConfig, list[dict[str, Any]]]:
    """The winning settings (their reasons in ``decided``) and the leaderboard rows; ``fit`` trains the
    trials on images (see :func:`image_trial`)."""
    start = time.perf_counter()
    budget = config.time_budget
    explicit = set(original.model_fields_set)
    candidates: list[Candidate] = []
    if config.strategy == "feature-extraction" and use_feature_cache(config, created, source):
        candidates += search_heads(config, explicit, source, created, seconds=HEAD_SHARE * budget)
    holdout = None
    images = len(source.labels("train"))
    for recipe, candidate in image_candidates(original, explicit, profile, source):
        wrong = (1 - max(c.accuracy for c in candidates)) * images * HELD_OUT if candidates else math.inf
        if wrong < MIN_HELD_OUT_ERRORS:
            log.info("auto: the best head gets all but about %.1f of %d held-out images right, too few for a recipe "
                     "on images to show a gain; none is tried", wrong, int(images * HELD_OUT))
            break
        spent = time.perf_counter() - start
        estimate = image_cost(candidate, images, len(source.classes))
        # a trial on 80% of train, then (if it wins) the final run on all of it
        if spent + 2 * estimate > budget:
            log.info("auto: skipping %s (about %.0f s for a trial and the final run; %.0f s of the budget left)",
                     recipe, 2 * estimate, budget - spent)
            continue
        holdout = holdout or held_out_source(source, config.seed)
        began = time.perf_counter()
        log.info("auto: trying %s on %d images, %d held out", recipe, len(holdout.labels("train")),
                 len(holdout.labels("val")))
        accuracy = image_trial(candidate, holdout, fit)
        candidates.append(Candidate(recipe, candidate, accuracy, f"{int(HELD_OUT * 100)}% of train held out",
                                    time.perf_counter() - began))
        log.info("auto: %s: held-out accuracy %.3f in %.1f s", recipe, accuracy, time.perf_counter() - began)
    if not candidates:
        return config, []
    winner = choose(candidates, len(holdout.labels("val")) if holdout is not None else 0)
    rows = [{"recipe": c.recipe, "heldout_accuracy": c.accuracy, "heldout": c.heldout, "seconds": c.seconds,
             "chosen": c is winner} for c in candidates]
    chosen = winner.config
    if "name" not in explicit:
        chosen = update_config(chosen, name=run_name(chosen.model, chosen.strategy))
    chosen.decided["recipe"] = (f"--auto: held-out accuracy {winner.accuracy:.3f} ({winner.heldout}), chosen of "
                                f"{len(candidates)} recipes in leaderboard.md (a recipe on images must get one more "
                                f"held-out image right than the best head)")
    log.info("auto: chose %s (held-out accuracy %.3f); search took %.1f s", winner.recipe, winner.accuracy,
             time.perf_counter() - start)
    return chosen, rows
