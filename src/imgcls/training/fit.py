"""``imgcls train``: from DATA to a run directory, readable top to bottom.

resolve data -> resolve settings -> build model -> write run dir -> fit -> pictures and report.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.exceptions import SIGTERMException

from imgcls.config import TrainConfig, config_of_run, config_record, update_config
from imgcls.data.datamodule import FeatureDataModule, ImageDataModule, class_weights
from imgcls.data.decoded_cache import use_decoded_cache
from imgcls.data.doctor import check_training_data
from imgcls.data.presets import EvalPreset
from imgcls.data.profile import DataProfile, profile_data
from imgcls.data.source import DataSource, resolve_data
from imgcls.errors import ConfigError, TrainingInterrupted, TrainingTerminated
from imgcls.models.checkpoint import checkpoint_meta, load_checkpoint, read_checkpoint_file
from imgcls.models.factory import SCRATCH_MODELS, CreatedModel, create_model, resolve_arch
from imgcls.models.multilabel import module_class, selection_metric
from imgcls.models.task import is_multilabel
from imgcls.rundir import RunDir
from imgcls.runtime import cpu_loader_workers, usable_cpus
from imgcls.training.callbacks import (AtomicCheckpointIO, EpochLog, EpochProgressBar, RunHistory, SaveOnInterrupt,
                                      run_checkpoints)
from imgcls.training.features import head_matches_model, supports_cached_features, train_val_features
from imgcls.training.strategies import (Stage, apply_stage, default_head_epochs, default_layer_decay, default_lr,
                                        plan_stages)
from imgcls.training.distributed import (ProcessCount, create_run_dir, finish_launch, is_rank_zero,
                                         quiet_other_ranks, trainer_strategy)
from imgcls.training.ema import ema_callbacks
from imgcls.leaderboard import write_leaderboard
from imgcls.training import auto
from imgcls.training.decide import decide, log_decisions
from imgcls.training.label_issues import training_suspects
from imgcls.training.lr_find import resolve_auto_lr
from imgcls.training.preemption import SaveOnPreemption, cluster_plugins, resume_position
from imgcls.training.tracking import make_loggers

log = logging.getLogger(__name__)


# settings -------------------------------------------------------------------------------------
def default_workers() -> int:
    """Loader processes: leave the cores to the model on small CPU machines, more with a GPU."""
    return min(8, usable_cpus()) if torch.cuda.is_available() else cpu_loader_workers()


def default_precision() -> str:
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32"


def check_precision(precision: str) -> None:
    """Mixed precision the hardware cannot run is a user error, not a traceback from deep in Lightning."""
    if precision == "16-mixed" and not torch.cuda.is_available():
        raise ConfigError("--precision 16-mixed needs a CUDA GPU; on a CPU use --precision bf16-mixed or 32")
    if precision == "bf16-mixed" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16-mixed is not supported by this GPU; use --precision 16-mixed")


def scratch_img_size(source: DataSource) -> int:
    """For nets without a pretrained input size: the data's typical size, a multiple of 8 in [32, 224]."""
    return min(224, max(32, math.ceil(source.typical_size() / 8) * 8))


def resolve_config(config: TrainConfig, source: DataSource, profile: DataProfile | None = None,
                   announce: bool = True) -> TrainConfig:
    """Fill every "decide for me" (None) setting; the result is what config.yaml records. Settings the
    data decide (training/decide.py) come back with their reasons in ``decided``."""
    arch = resolve_arch(config.model)
    scratch_net = arch in SCRATCH_MODELS
    if config.strategy == "scratch" and config.weights:
        raise ConfigError("--strategy scratch trains from random initialisation; drop --weights, "
                          "or use --strategy finetune to start from those weights")
    pretrained = bool(config.weights) or (config.pretrained and not scratch_net and config.strategy != "scratch")
    strategy = config.strategy or ("feature-extraction" if pretrained else "scratch")
    if strategy in ("feature-extraction", "staged", "finetune") and not pretrained:
        raise ConfigError(f"--strategy {strategy} needs pretrained weights, but {config.model} has none here "
                          f"(--no-pretrained or a scratch net); use --strategy scratch, or give --weights PATH")
    profile = profile or profile_data(source)
    decided = decide(config, set(config.model_fields_set), profile, strategy)
    config = update_config(config, **{name: value for name, (value, _) in decided.items()})
    changes: dict[str, Any] = {
        "task": resolve_task(config, source),
        "strategy": strategy,
        "pretrained": pretrained,
        "lr": config.lr or default_lr(strategy, config.optimizer),
        "img_size": config.img_size or (scratch_img_size(source) if scratch_net else None),
        "augment": config.augment or ("standard" if strategy in ("finetune", "staged") else "light"),
        "head_epochs": (config.head_epochs or default_head_epochs(config.epochs)) if strategy == "staged" else None,
        "layer_decay": config.layer_decay or default_layer_decay(strategy),
        "precision": config.precision or default_precision(),
        "workers": default_workers() if config.workers is None else config.workers,
        "name": config.name or run_name(config.model, strategy),
        "freeze_bn": bool(config.freeze_bn),
    }
    config = update_config(config, **changes)
    config.decided.update({name: reason for name, (_, reason) in decided.items()})
    if announce:
        log_decisions(profile, config.decided)
    check_precision(config.precision)
    return config


def run_name(model: str, strategy: str) -> str:
    return re.sub(r"[^\w.-]+", "_", f"{model}-{strategy}")


def resolve_task(config: TrainConfig, source: DataSource) -> str:
    """The task the data holds (labels.csv: multilabel); --task only confirms it, and multi-label refuses the
    settings that assume one class per image."""
    if config.task is not None and config.task != source.task:
        found = "labels.csv (multi-label)" if source.task == "multilabel" else "class folders (one label each)"
        raise ConfigError(f"--task {config.task}, but {source.spec} holds {found}; drop --task, or give "
                          + ("a folder with labels.csv (path,labels)" if config.task == "multilabel"
                             else "a folder of class folders"))
    if source.task == "multilabel":
        for name, value, off in (("mixup", config.mixup, 0), ("cutmix", config.cutmix, 0),
                                 ("label_smoothing", config.label_smoothing, 0), ("balance", config.balance, "none"),
                                 ("ema", config.ema, False)):
            if value != off:
                raise ConfigError(f"--{name.replace('_', '-')} assumes one class per image; multi-label training "
                                  f"(labels.csv) does not support it: drop the flag")
    return source.task


def _recipe(config: TrainConfig, source: DataSource) -> dict[str, Any]:
    weights = None
    if config.balance == "loss":
        weights = class_weights(source.labels("train"), len(source.classes)).tolist()
    return {
        "optimizer": config.optimizer, "lr": config.lr, "weight_decay": config.weight_decay,
        "momentum": config.momentum, "scheduler": config.scheduler, "warmup_epochs": config.warmup_epochs,
        "epochs": config.epochs, "label_smoothing": config.label_smoothing, "mixup": config.mixup,
        "cutmix": config.cutmix, "class_weights": weights, "freeze_bn": bool(config.freeze_bn), "task": source.task,
    }


def describe_data(source: DataSource) -> None:
    for item in source.skipped:
        log.warning("skipped %s (%s): %s", item.path, item.kind, item.detail)
    sizes = " / ".join(f"{len(source.labels(s))} {s}" for s in source.splits)
    log.info("data: %s: %d classes (%s), %s images", source.spec, len(source.classes),
             ", ".join(source.classes[:10]) + (" ..." if len(source.classes) > 10 else ""), sizes)


def _quiet_lightning() -> None:
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    # Notices a user can do nothing about (loader advice we already follow, log intervals, internals).
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*treespec, LeafSpec.*",
                    ".*Checkpoint directory .* exists and is not empty.*", ".*sync_dist=True.*",
                    ".*smaller than the logging interval.*", ".*exists and is not empty.*",
                    ".*restarting from a mid-epoch checkpoint.*", ".*resuming from a checkpoint that ended.*",
                    ".*pin_memory.* no accelerator is found.*", ".*module\\(s\\) in eval mode.*",
                    ".*PlateauLRScheduler is deprecated.*"):
        warnings.filterwarnings("ignore", message=pattern)


def build_trainer(config: TrainConfig, run: RunDir, callbacks: list[pl.Callback], epochs: int,
                  progress: pl.Callback) -> pl.Trainer:
    if config.patience:
        callbacks = [*callbacks, EarlyStopping(monitor=selection_metric(config.task), mode="max",
                                               patience=config.patience)]
    callbacks = [*ema_callbacks(config), *callbacks]  # first: EMA sets the epoch's val_acc before RunHistory reads it
    loggers = make_loggers(config, run)
    return pl.Trainer(max_epochs=epochs, accelerator="auto", devices=config.devices, num_nodes=config.num_nodes,
                      strategy=trainer_strategy(config.devices, config.num_nodes),
                      precision=config.precision, callbacks=[*callbacks, ProcessCount(), progress], logger=loggers,
                      default_root_dir=run.path, plugins=[AtomicCheckpointIO(), *cluster_plugins()], enable_model_summary=False,
                      enable_progress_bar=isinstance(progress, EpochProgressBar),
                      accumulate_grad_batches=config.accumulate, gradient_clip_val=config.grad_clip,
                      log_every_n_steps=10, num_sanity_val_steps=0)


# the job ----------------------------------------------------------------------------------------
def prepare(config: TrainConfig, verb: str = "train") -> tuple[TrainConfig, DataSource, CreatedModel]:
    """The data and the model ``config`` names, resolved once for ``imgcls train`` and ``imgcls lr-find``;
    the config comes back completed (defaults that depend on the data, the model's image size)."""
    if not config.data:
        raise ConfigError(f"no DATA given; pass a folder (or cifar10) as `imgcls {verb} DATA`, or `data:` in --config")
    _quiet_lightning()
    quiet_other_ranks()
    pl.seed_everything(config.seed, workers=True, verbose=False)

    resolve_arch(config.model)  # a mistyped --model fails now, not after checking every image
    source = resolve_data(config.data, val_split=config.val_split, seed=config.seed)
    describe_data(source)
    if is_rank_zero() and source.task == "single":  # labels.csv rows were checked as they were read
        check_training_data(source)  # warns about leaks, label conflicts, duplicates, imbalance
    config = resolve_config(config, source)
    created = create_model(config.model, len(source.classes), pretrained=config.pretrained, weights=config.weights,
                           img_size=config.img_size, cifar_stem=config.cifar_stem)
    return update_config(config, img_size=created.preprocess.img_size), source, created


def train(config: TrainConfig, callbacks: list[pl.Callback] | None = None) -> RunDir:
    """Train as ``config`` says; returns the finished run directory. ``callbacks`` join Lightning's."""
    original = config
    config, source, created = prepare(config)
    leaderboard: list[dict[str, Any]] = []
    if auto.wants_auto(config, set(original.model_fields_set)):
        config, leaderboard = auto.search(original, config, source, created, profile_data(source))
        if config.model != created.spec.name or config.img_size != created.preprocess.img_size:
            created = create_model(config.model, len(source.classes), pretrained=config.pretrained,
                                   weights=config.weights, img_size=config.img_size, cifar_stem=config.cifar_stem)
    run = create_run_dir(config.out, config.name, config.devices, config.num_nodes)  # one run for all ranks
    config = resolve_auto_lr(config, source, created, run.path)  # --lr auto: lr-find first
    if is_rank_zero():
        if leaderboard:
            write_leaderboard(run.path, leaderboard)
        run.write_config(config_record(config))
        run.write_classes(source.classes)
        if source.split is not None:
            run.write_split(source.split)
    return fit(config, source, created, run, callbacks=callbacks)


def fit(config: TrainConfig, source: DataSource, created: CreatedModel, run: RunDir,
        resume_from: Path | None = None, callbacks: list[pl.Callback] | None = None, report: bool = True) -> RunDir:
    """Train the stages of ``config.strategy`` in ``run``; from ``resume_from`` (a last.pt) when given;
    ``report``: evaluate best.pt and write the pictures and report.html."""
    stages = plan_stages(config.strategy, config.epochs, config.lr, config.layer_decay, config.warmup_epochs,
                         config.head_epochs)
    log.info("model: %s (%s), weights: %s; strategy %s in %s", config.model, created.spec.arch,
             created.weights or "random init", config.strategy,
             " then ".join(f"{s.epochs} epoch(s) {'head only' if s.frozen else 'all layers'} at lr {s.lr:g}"
                           + (f", layer decay {s.layer_decay:g}" if s.layer_decay < 1 else "") for s in stages))
    log.info("run: %s", run.path)
    history = RunHistory(run, monitor=selection_metric(config.task))
    first, history.epoch_offset = resume_point(resume_from) if resume_from else (0, 0)
    best_state: dict[str, Any] | None = None
    val_features: dict[int, torch.Tensor] = {}  # stage index -> val embeddings, for stages trained on the cache
    suspects = None
    for stage in stages[first:]:
        total = history.epoch_offset + sum(s.epochs for s in stages[stage.index:])  # for "epoch k of N"
        trainer, best, stage_val_features = fit_stage(config, source, created, run, stage, history, best_state,
                                                      resume_from if stage.index == first else None, callbacks or [],
                                                      total)
        if stage_val_features is not None:
            val_features[stage.index] = stage_val_features
            if (report and suspects is None and trainer.is_global_zero and source.files
                    and source.task != "multilabel"):
                # the train embeddings are in the feature cache now: confident learning costs seconds
                suspects = training_suspects(created.model, source, created.preprocess, created.spec.to_dict())
        if trainer.interrupted:
            raise TrainingInterrupted(f"training interrupted; resume with: imgcls train --resume {run.path}")
        best_state = best.state_dict()
        history.next_stage()
    if trainer.is_global_zero:
        history.write()
        if not report:
            return run
        probabilities = best_head_probabilities(run, created, val_features)
        if source.task == "multilabel":  # thresholds are chosen on val, stored in best.pt, then reported
            from imgcls.evaluation.multilabel_report import write_multilabel_run_report

            write_multilabel_run_report(run, source=source, probabilities=probabilities)
        else:
            from imgcls.evaluation.report import write_run_report
            from imgcls.training.trust import fit_trust

            trust = fit_trust(run, config, source)  # temperature and "unknown" threshold, into best.pt
            if trust is not None:
                probabilities = trust.val_probs
            report_suspects(suspects, config, run)
            write_run_report(run, source=source, probabilities=probabilities,
                             suspects=None if suspects is None else [s.to_dict() for s in suspects])
        finish_launch(config.out, config.name)
    return run


def report_suspects(suspects: list | None, config: TrainConfig, run: RunDir) -> None:
    if suspects is None:
        log.info("suspect labels: `imgcls doctor %s --labels --model %s` lists training images whose label is "
                 "probably wrong", config.data, run.path)
        return
    log.info("suspect labels: %d training image(s) look like another class (report.html lists them; "
             "`imgcls doctor %s --labels --model %s` too)", len(suspects), config.data, run.path)
    for suspect in suspects[:5]:
        log.info("  %s: %s -> %s (%.2f)", suspect.path, suspect.given, suspect.likely, suspect.likely_prob)


def best_head_probabilities(run: RunDir, created: CreatedModel,
                            val_features: dict[int, torch.Tensor]) -> np.ndarray | None:
    """best.pt's val probabilities from the cached embeddings, when best.pt comes from a stage trained on them
    (its backbone is the frozen one they were computed with): the report then needs no pass over the images."""
    if not val_features:
        return None
    best = load_checkpoint(run.best_checkpoint)
    features = val_features.get(int(best.info.get("stage", 0)))
    if features is None:
        return None
    model = created.model
    model.load_state_dict(best.state_dict)
    with torch.inference_mode():
        logits = model.eval().get_classifier()(features).float()
        return (torch.sigmoid(logits) if is_multilabel(best.info) else torch.softmax(logits, dim=1)).numpy()


def resume_point(last: Path) -> tuple[int, int]:
    """(stage index, epochs of earlier stages) recorded in a last.pt."""
    checkpoint = read_checkpoint_file(last)
    recipe = (checkpoint.get("hyper_parameters") or {}).get("recipe") or {}
    return int(checkpoint["imgcls"].get("stage", 0)), int(recipe.get("epoch_offset", 0))


def fit_stage(config: TrainConfig, source: DataSource, created: CreatedModel, run: RunDir, stage: Stage,
              history: RunHistory, best_state: dict[str, Any] | None, resume_from: Path | None,
              callbacks: list[pl.Callback], total_epochs: int) -> tuple[pl.Trainer, pl.Callback, torch.Tensor | None]:
    """One Lightning fit: the head on cached features, or the network on images; returns the trainer, the
    best-checkpoint callback and, when the stage ran on the cache, the val embeddings. ``total_epochs`` is
    the run's last epoch number, for progress."""
    model = created.model
    settings = apply_stage(model, stage)
    on_features = stage.frozen and use_feature_cache(config, created, source)
    log.info("stage %d: %s of %s parameters train%s", stage.index + 1,
             f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}",
             f"{sum(p.numel() for p in model.parameters()):,}", ", on cached features" if on_features else "")
    meta = checkpoint_meta(created.spec, source.classes, created.preprocess, strategy=config.strategy,
                           stage=stage.index, task=source.task)
    recipe = {**_recipe(config, source), **settings, "inputs": "features" if on_features else "images",
              "epoch_offset": history.epoch_offset}
    module = module_class(source.task)(model, meta, recipe)
    datamodule, val_features = make_datamodule(config, source, created, on_features)
    if resume_from is not None and config.devices * config.num_nodes == 1:
        # Mid-epoch: the epoch's order again, without the batches already done. (Across processes Lightning's
        # distributed sampler wraps this one and needs its full length: those epochs restart their order.)
        datamodule.resume_at = resume_position(read_checkpoint_file(resume_from), config.batch_size)
    best, last = run_checkpoints(run, selection_metric(config.task))
    if best_state:
        best.load_state_dict(best_state)  # a later stage must beat the best epoch of the earlier ones
    progress = (EpochProgressBar if sys.stderr.isatty() else EpochLog)(total_epochs, history.epoch_offset)
    trainer = build_trainer(config, run, [history, SaveOnInterrupt(run), SaveOnPreemption(run), best, last,
                                          *callbacks], stage.epochs, progress)
    sigint, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        _default_sigterm()  # Lightning's handler alone: it stops after the batch in flight
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None,
                    weights_only=True)
    except SystemExit as exc:  # Lightning exits on Ctrl-C and SIGTERM after its on_exception hooks
        if isinstance(exc, SIGTERMException):
            raise TrainingTerminated(f"training stopped by SIGTERM; resume with: imgcls train --resume "
                                     f"{run.path}") from None
        raise TrainingInterrupted(f"training interrupted; resume with: imgcls train --resume {run.path}") from exc
    finally:
        _restore_handlers(sigint, sigterm)
    return trainer, best, val_features


def make_datamodule(config: TrainConfig, source: DataSource, created: CreatedModel,
                    on_features: bool) -> tuple[pl.LightningDataModule, torch.Tensor | None]:
    """The stage's data: embeddings from the feature cache (and the val ones, returned too), or images."""
    if on_features:
        train_set, val_set = train_val_features(created.model, source, created.preprocess, created.spec.to_dict(),
                                                mirror=mirror_features(config), batch_size=2 * config.batch_size,
                                                workers=config.workers)
        return FeatureDataModule((train_set.features, train_set.labels), (val_set.features, val_set.labels),
                                 num_classes=len(source.classes), batch_size=config.batch_size,
                                 balance=config.balance, seed=config.seed), val_set.features
    return ImageDataModule(source, created.preprocess, batch_size=config.batch_size, workers=config.workers,
                           augment=config.augment, hflip=config.hflip, balance=config.balance, seed=config.seed,
                           decoded_cache=source.task == "single" and use_decoded_cache(config, source,
                                                                                       created.preprocess)), None


def _default_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _restore_handlers(sigint: Any, sigterm: Any) -> None:
    """Lightning ignores Ctrl-C from the first one on; give the caller (a notebook, pytest, the CLI) its
    handlers back."""
    if threading.current_thread() is threading.main_thread():
        for signum, handler in ((signal.SIGINT, sigint), (signal.SIGTERM, sigterm)):
            if handler is not None:
                signal.signal(signum, handler)


def mirror_features(config: TrainConfig) -> bool:
    """Cache a mirrored copy of each training image too? Only with --augment standard (and --hflip): on
    ants/bees it steadied the last epochs (+0.5% val acc, mean of 10 seeds) but not the best epoch, for
    twice the extraction time of the train split."""
    return config.hflip and config.augment == "standard"


def use_feature_cache(config: TrainConfig, created: CreatedModel, source: DataSource) -> bool:
    """Whether the frozen backbone can run once instead of every epoch; says why not when it cannot."""
    if not config.cache_features:
        return False
    if config.cutmix > 0:
        log.info("--cutmix mixes pixels, so the frozen backbone runs every epoch (no feature cache)")
        return False
    if not supports_cached_features(created.model):
        log.info("%s has no forward_head/get_classifier; the frozen backbone runs every epoch", config.model)
        return False
    probe = source.dataset("val", EvalPreset(created.preprocess), draft_size=created.preprocess.resize_size)
    if not head_matches_model(created.model, probe):
        log.info("%s: classifier(features) differs from the model's output; the backbone runs every epoch",
                 config.model)
        return False
    return True


def resume(run_path: str | Path, callbacks: list[pl.Callback] | None = None) -> RunDir:
    """Continue an interrupted run from its last.pt: same settings, epochs, history and schedule."""
    run = RunDir(run_path)
    last = run.file(RunDir.LAST)
    if not run.path.is_dir() or not last.is_file():
        raise ConfigError(f"nothing to resume in {run.path}: it needs a last.pt from an interrupted `imgcls train`")
    checkpoint = load_checkpoint(last)  # refuses a tampered or foreign file before Lightning touches it
    config = config_of_run(run.read_config(), run.file(RunDir.CONFIG))
    _quiet_lightning()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    source = resolve_data(config.data, val_split=config.val_split, seed=config.seed, recorded_split=run.read_split())
    describe_data(source)
    if source.classes != run.read_classes():
        raise ConfigError(f"the classes in {config.data} ({', '.join(source.classes)}) are no longer those of the run "
                          f"({', '.join(run.read_classes())}); restore the data or start a new run")
    created = create_model(config.model, len(source.classes), pretrained=False, img_size=config.img_size,
                           cifar_stem=config.cifar_stem)
    # The backbone of last.pt (the pretrained one, while frozen) is what cached features are keyed by.
    created.model.load_state_dict(checkpoint.state_dict)
    return fit(config, source, created, run, resume_from=last, callbacks=callbacks)
