"""``imgcls train``: from DATA to a run directory, readable top to bottom.

resolve data -> resolve settings -> build model -> write run dir -> fit -> pictures and report.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping

from imgcls.config import TrainConfig, config_of_run, update_config
from imgcls.data.datamodule import ImageDataModule, class_weights
from imgcls.data.doctor import check_training_data
from imgcls.data.source import DataSource, resolve_data
from imgcls.errors import ConfigError, TrainingInterrupted
from imgcls.models.checkpoint import checkpoint_meta, read_checkpoint_file
from imgcls.models.factory import SCRATCH_MODELS, CreatedModel, create_model, resolve_arch
from imgcls.models.module import ClassifierModule
from imgcls.rundir import RunDir
from imgcls.training.callbacks import AtomicCheckpointIO, RunHistory, SaveOnInterrupt, run_checkpoints
from imgcls.training.ema import ema_callbacks
from imgcls.training.lr_find import resolve_auto_lr
from imgcls.training.strategies import apply_strategy, default_lr
from imgcls.training.tracking import make_loggers

log = logging.getLogger(__name__)


# settings -------------------------------------------------------------------------------------
def default_workers() -> int:
    """Loader processes: leave the cores to the model on small CPU machines, more with a GPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cpus) if torch.cuda.is_available() else max(0, min(4, cpus - 1))


def default_precision() -> str:
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32"


def scratch_img_size(source: DataSource) -> int:
    """For nets without a pretrained input size: the data's typical size, a multiple of 8 in [32, 224]."""
    return min(224, max(32, math.ceil(source.typical_size() / 8) * 8))


def resolve_config(config: TrainConfig, source: DataSource) -> TrainConfig:
    """Fill every "decide for me" (None) setting; the result is what config.yaml records."""
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
    changes: dict[str, Any] = {
        "strategy": strategy,
        "pretrained": pretrained,
        "lr": config.lr or default_lr(strategy, config.optimizer),
        "img_size": config.img_size or (scratch_img_size(source) if scratch_net else None),
        "augment": config.augment or ("standard" if strategy in ("finetune", "staged") else "light"),
        "precision": config.precision or default_precision(),
        "workers": default_workers() if config.workers is None else config.workers,
        "name": config.name or re.sub(r"[^\w.-]+", "_", f"{config.model}-{strategy}"),
    }
    return update_config(config, **changes)


def _recipe(config: TrainConfig, source: DataSource, strategy_settings: dict[str, Any]) -> dict[str, Any]:
    weights = None
    if config.balance == "loss":
        weights = class_weights(source.labels("train"), len(source.classes)).tolist()
    return {
        "optimizer": config.optimizer, "lr": config.lr, "weight_decay": config.weight_decay,
        "momentum": config.momentum, "scheduler": config.scheduler, "warmup_epochs": config.warmup_epochs,
        "epochs": config.epochs, "label_smoothing": config.label_smoothing, "mixup": config.mixup,
        "cutmix": config.cutmix, "class_weights": weights, **strategy_settings,
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
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*treespec, LeafSpec.*",
                    ".*Checkpoint directory .* exists and is not empty.*", ".*sync_dist=True.*"):
        warnings.filterwarnings("ignore", message=pattern)


def build_trainer(config: TrainConfig, run: RunDir, history: RunHistory, epochs: int) -> pl.Trainer:
    callbacks: list[pl.Callback] = [history, SaveOnInterrupt(run), *run_checkpoints(run)]
    if config.patience:
        callbacks.append(EarlyStopping(monitor="val_acc", mode="max", patience=config.patience))
    callbacks[:0] = ema_callbacks(config)  # first: it sets the epoch's val_acc before RunHistory reads it
    loggers = make_loggers(config, run)
    return pl.Trainer(max_epochs=epochs, accelerator="auto", devices=config.devices, num_nodes=config.num_nodes,
                      precision=config.precision, callbacks=callbacks, logger=loggers, default_root_dir=run.path,
                      plugins=[AtomicCheckpointIO()], enable_model_summary=False,
                      accumulate_grad_batches=config.accumulate, gradient_clip_val=config.grad_clip,
                      log_every_n_steps=10, num_sanity_val_steps=0)


# the job ----------------------------------------------------------------------------------------
def train(config: TrainConfig) -> RunDir:
    """Train as ``config`` says; returns the finished run directory."""
    if not config.data:
        raise ConfigError("no DATA given; pass a folder (or cifar10) as `imgcls train DATA`, or `data:` in --config")
    _quiet_lightning()
    pl.seed_everything(config.seed, workers=True, verbose=False)

    resolve_arch(config.model)  # a mistyped --model fails now, not after checking every image
    source = resolve_data(config.data, val_split=config.val_split, seed=config.seed)
    describe_data(source)
    check_training_data(source)  # warns about leaks, label conflicts, duplicates, imbalance
    config = resolve_config(config, source)
    created = create_model(config.model, len(source.classes), pretrained=config.pretrained, weights=config.weights,
                           img_size=config.img_size)
    config = update_config(config, img_size=created.preprocess.img_size)

    run = RunDir.create(config.out, config.name)
    config = resolve_auto_lr(config, source, created, run.path)
    run.write_config(config.model_dump())
    run.write_classes(source.classes)
    if source.split is not None:
        run.write_split(source.split)
    return fit(config, source, created, run)


def fit(config: TrainConfig, source: DataSource, created: CreatedModel, run: RunDir,
        resume_from: Path | None = None) -> RunDir:
    strategy_settings = apply_strategy(created.model, config.strategy)
    log.info("model: %s (%s), weights: %s; strategy %s: %s of %s parameters train", config.model,
             created.spec.arch, created.weights or "random init", config.strategy,
             f"{sum(p.numel() for p in created.model.parameters() if p.requires_grad):,}",
             f"{sum(p.numel() for p in created.model.parameters()):,}")
    meta = checkpoint_meta(created.spec, source.classes, created.preprocess, strategy=config.strategy)
    module = ClassifierModule(created.model, meta, _recipe(config, source, strategy_settings))
    datamodule = ImageDataModule(source, created.preprocess, batch_size=config.batch_size, workers=config.workers,
                                 augment=config.augment, hflip=config.hflip, balance=config.balance, seed=config.seed)
    history = RunHistory(run)
    trainer = build_trainer(config, run, history, config.epochs)
    log.info("run: %s", run.path)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    except SystemExit as exc:  # Lightning exits on Ctrl-C after its on_exception hooks
        raise TrainingInterrupted(f"training interrupted; resume with: imgcls train --resume {run.path}") from exc
    if trainer.interrupted:
        raise TrainingInterrupted(f"training interrupted; resume with: imgcls train --resume {run.path}")
    if trainer.is_global_zero:
        history.write()
        from imgcls.evaluation.report import write_run_report

        write_run_report(run)
    return run


def resume(run_path: str | Path) -> RunDir:
    """Continue an interrupted run from its last.pt: same settings, epochs, history and schedule."""
    run = RunDir(run_path)
    last = run.file(RunDir.LAST)
    if not run.path.is_dir() or not last.is_file():
        raise ConfigError(f"nothing to resume in {run.path}: it needs a last.pt from an interrupted `imgcls train`")
    read_checkpoint_file(last)  # refuse a tampered or foreign file before Lightning touches it
    config = config_of_run(run.read_config(), run.file(RunDir.CONFIG))
    _quiet_lightning()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    source = resolve_data(config.data, val_split=config.val_split, seed=config.seed, recorded_split=run.read_split())
    describe_data(source)
    if source.classes != run.read_classes():
        raise ConfigError(f"the classes in {config.data} ({', '.join(source.classes)}) are no longer those of the run "
                          f"({', '.join(run.read_classes())}); restore the data or start a new run")
    created = create_model(config.model, len(source.classes), pretrained=False, img_size=config.img_size)
    return fit(config, source, created, run, resume_from=last)

