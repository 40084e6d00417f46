"""``imgcls train``: from DATA to a run directory, readable top to bottom.

prepare (training/setup.py: data, settings, model) -> write run dir -> fit each stage -> pictures and report.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.combined_loader import _shutdown_workers_and_reset_iterator
from lightning.pytorch.utilities.exceptions import SIGTERMException

from imgcls.config import TrainConfig, config_of_run, config_record
from imgcls.data.profile import profile_data
from imgcls.data.source import DataSource
from imgcls.errors import ConfigError, TrainingInterrupted, TrainingTerminated
from imgcls.evaluation.multilabel_report import write_multilabel_run_report
from imgcls.evaluation.report import write_run_report
from imgcls.models.checkpoint import load_checkpoint, read_checkpoint_file
from imgcls.leaderboard import write_leaderboard
from imgcls.models.factory import CreatedModel, create_model
from imgcls.models.metadata import checkpoint_meta
from imgcls.models.multilabel import module_class, selection_metric
from imgcls.models.recipe import Recipe
from imgcls.models.task import is_multilabel
from imgcls.rundir import RunDir, writable_folder
from imgcls.training import auto
from imgcls.training.callbacks import (AtomicCheckpointIO, EpochLog, EpochProgressBar, RunHistory, SaveOnInterrupt,
                                      ValOutputs, run_checkpoints)
from imgcls.training.decide import wants_auto
from imgcls.training.distributed import ProcessCount, create_run_dir, finish_launch, is_rank_zero, trainer_strategy
from imgcls.training.ema import ema_callbacks
from imgcls.training.features import supports_cached_features
from imgcls.training.label_issues import training_suspects
from imgcls.training.lr_find import resolve_auto_lr
from imgcls.training.preemption import SaveOnPreemption, cluster_plugins, resume_position
from imgcls.training.setup import lightning_notices_hidden, make_datamodule, make_recipe, prepare, use_feature_cache
from imgcls.training.strategies import Stage, apply_stage, plan_stages
from imgcls.training.tracking import make_loggers

log = logging.getLogger(__name__)


def build_trainer(config: TrainConfig, run: RunDir, callbacks: list[pl.Callback], epochs: int,
                  progress: pl.Callback) -> pl.Trainer:
    if config.patience:
        callbacks = [*callbacks, EarlyStopping(monitor=selection_metric(config.task), mode="max",
                                               patience=config.patience)]
    callbacks = [*ema_callbacks(config), *callbacks]  # first: EMA sets the epoch's val_acc before RunHistory reads it
    loggers = make_loggers(config, run)
    return pl.Trainer(max_epochs=epochs, accelerator="auto", devices=config.devices, num_nodes=config.num_nodes,
                      strategy=trainer_strategy(config.processes),
                      precision=config.precision, callbacks=[*callbacks, ProcessCount(), progress], logger=loggers,
                      default_root_dir=run.path, plugins=[AtomicCheckpointIO(), *cluster_plugins()], enable_model_summary=False,
                      enable_progress_bar=isinstance(progress, EpochProgressBar),
                      accumulate_grad_batches=config.accumulate, gradient_clip_val=config.grad_clip,
                      log_every_n_steps=10, num_sanity_val_steps=0)


# the job ----------------------------------------------------------------------------------------
def train(config: TrainConfig, callbacks: list[pl.Callback] | None = None) -> RunDir:
    """Train as ``config`` says; returns the finished run directory. ``callbacks`` join Lightning's."""
    original = config
    config, source, created = prepare(config)
    if is_rank_zero():  # before the search and the caches: minutes of work must not end at an unwritable --out
        writable_folder(Path(config.out), "runs")
    leaderboard: list[dict[str, Any]] = []
    if wants_auto(config, set(original.model_fields_set)):
        config, leaderboard = auto.search(original, config, source, created, profile_data(source), fit)
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
                         config.head_epochs, config.blocks_to_train)
    log.info("model: %s (%s), weights: %s; strategy %s in %s", config.model, created.spec.arch,
             created.weights or "random init", config.strategy,
             " then ".join(f"{s.epochs} epoch(s) {s.trains} at lr {s.lr:g}"
                           + (f", layer decay {s.layer_decay:g}" if s.layer_decay < 1 else "") for s in stages))
    log.info("run: %s", run.path)
    history = RunHistory(run, monitor=selection_metric(config.task))
    val_outputs = ValOutputs()
    first, history.epoch_offset = resume_point(resume_from) if resume_from else (0, 0)
    best_state: dict[str, Any] | None = None
    val_features: dict[int, torch.Tensor] = {}  # stage index -> val embeddings, for stages trained on the cache
    suspects = None
    for stage in stages[first:]:
        total = history.epoch_offset + sum(s.epochs for s in stages[stage.index:])  # for "epoch k of N"
        trainer, best, stage_val_features = fit_stage(config, source, created, run, stage, history, best_state,
                                                      resume_from if stage.index == first else None,
                                                      [val_outputs, *(callbacks or [])], total)
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
        if stage.index + 1 < len(stages):
            start_from_best(created, run)
    if trainer.is_global_zero:
        history.write()
        if not report:
            return run
        probabilities = best_head_probabilities(run, created, val_features)
        if source.task == "multilabel":  # thresholds are chosen on val, stored in best.pt, then reported
            write_multilabel_run_report(run, source=source, probabilities=probabilities)
        else:
            from imgcls.training.trust import fit_trust

            # temperature and "unknown" threshold, into best.pt
            trust = fit_trust(run, config, source, decoded=getattr(trainer.datamodule, "decoded_cache", False),
                              validated=val_outputs)
            if trust is not None:
                probabilities = trust.val_probs
            report_suspects(suspects, config, run)
            write_run_report(run, source=source, probabilities=probabilities,
                             suspects=None if suspects is None else [s.to_dict() for s in suspects])
        finish_launch(config.out, config.name)
    return run


def start_from_best(created: CreatedModel, run: RunDir) -> None:
    """The next stage fine-tunes the best weights so far, not the last: a head's last epoch can be past its
    best, and fine-tuning from there starts lower than the stage it follows ended."""
    if run.best_checkpoint.is_file():  # (each process of a multi-node run reads its own copy)
        created.model.load_state_dict(load_checkpoint(run.best_checkpoint).state_dict)


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
    recipe = Recipe.from_dict((checkpoint.get("hyper_parameters") or {}).get("recipe") or {"lr": 0.0})
    return int(checkpoint["imgcls"].get("stage", 0)), recipe.epoch_offset


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
    recipe = make_recipe(config, source, **settings, inputs="features" if on_features else "images",
                         epoch_offset=history.epoch_offset)
    module = module_class(source.task)(model, meta, recipe)
    # What validation computes is kept for calibration afterwards where it is the whole val split's, in full
    # precision (the "unknown" threshold is compared with float32 scores when predicting).
    module.keep_val_outputs = (not on_features and source.task == "single" and not config.ema
                               and config.processes == 1 and "16" not in str(config.precision)
                               and supports_cached_features(model))
    datamodule, val_features = make_datamodule(config, source, created, on_features)
    if resume_from is not None and config.processes == 1:
        # Mid-epoch: the epoch's order again, without the batches already done. (Across processes Lightning's
        # distributed sampler wraps this one and needs its full length: those epochs restart their order.)
        datamodule.resume_at = resume_position(read_checkpoint_file(resume_from), config.batch_size)
    best, last = run_checkpoints(run, selection_metric(config.task))
    if best_state:
        best.load_state_dict(best_state)  # a later stage must beat the best epoch of the earlier ones
    progress = (EpochProgressBar if sys.stderr.isatty() else EpochLog)(total_epochs, history.epoch_offset)
    sigint, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    trainer = None
    try:
        _default_sigterm()  # Lightning's handler alone: it stops after the batch in flight
        with lightning_notices_hidden():
            trainer = build_trainer(config, run, [history, SaveOnInterrupt(run), SaveOnPreemption(run), best, last,
                                                  *callbacks], stage.epochs, progress)
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None,
                        weights_only=True)
    except SystemExit as exc:  # Lightning exits on Ctrl-C and SIGTERM after its on_exception hooks
        if isinstance(exc, SIGTERMException):
            raise TrainingTerminated(f"training stopped by SIGTERM; resume with: imgcls train --resume "
                                     f"{run.path}") from None
        raise TrainingInterrupted(f"training interrupted; resume with: imgcls train --resume {run.path}") from exc
    finally:
        _restore_handlers(sigint, sigterm)
        if trainer is not None:
            _stop_loader_workers(trainer)
    return trainer, best, val_features


def _stop_loader_workers(trainer: pl.Trainer) -> None:
    """End the stage's persistent loader workers now. Lightning can leave them running until the trainer is
    garbage-collected (a SIGTERM at an epoch's last batch does), and they ignore SIGTERM (the main process
    finishes its batch first): they would hold the process's exit, and after a stage their memory."""
    for group in (trainer.train_dataloader, trainer.val_dataloaders):
        for loader in group if isinstance(group, (list, tuple)) else [group]:
            if loader is not None:
                _shutdown_workers_and_reset_iterator(loader)


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


def resume(run_path: str | Path, callbacks: list[pl.Callback] | None = None) -> RunDir:
    """Continue an interrupted run from its last.pt: same settings, epochs, history and schedule."""
    run = RunDir(run_path)
    last = run.file(RunDir.LAST)
    if not run.path.is_dir() or not last.is_file():
        raise ConfigError(f"nothing to resume in {run.path}: it needs a last.pt from an interrupted `imgcls train`")
    checkpoint = load_checkpoint(last)  # refuses a tampered or foreign file before Lightning touches it
    config = config_of_run(run.read_config(), run.file(RunDir.CONFIG))
    config, source, created = prepare(config, verb="train --resume", resuming=run)
    # The backbone of last.pt (the pretrained one, while frozen) is what cached features are keyed by.
    created.model.load_state_dict(checkpoint.state_dict)
    return fit(config, source, created, run, resume_from=last, callbacks=callbacks)
