"""Cross-cutting training policy: the run's history, checkpoints, interrupts."""

from __future__ import annotations

import io
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.plugins.io import TorchCheckpointIO

from imgcls.rundir import RunDir, atomic_write_bytes

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temp file beside it and renames it into place, so a kill at any
    moment leaves either the previous complete file or the new complete file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())


def run_checkpoints(run: RunDir, monitor: str = "val_acc") -> list[ModelCheckpoint]:
    """best.pt (highest ``monitor``, weights and metadata) and last.pt (full state for --resume), both
    written at the end of each epoch after the history callback has recorded the epoch."""
    best = ModelCheckpoint(dirpath=run.path, filename="best", monitor=monitor, mode="max", save_top_k=1,
                           save_weights_only=True, save_on_train_epoch_end=True, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=run.path, filename="last", monitor=None, save_top_k=1,
                           save_on_train_epoch_end=True, enable_version_counter=False)
    for checkpoint in (best, last):
        checkpoint.FILE_EXTENSION = ".pt"
    return [best, last]


@dataclass
class EpochOutputs:
    """One validation pass: the val split's embeddings, logits and labels, in its order."""

    accuracy: float
    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


class ValOutputs(Callback):
    """Keeps what validation computed (embeddings, logits) for the epochs that reach the highest val accuracy
    so far, by run epoch: after training, best.pt's epoch is among them, and calibrating it and fitting its
    "unknown" threshold need no second pass of the network over val. Only for modules that keep them
    (``keep_val_outputs``): one process (each rank validates a shard), no EMA (whose weights validate apart)."""

    def __init__(self) -> None:
        self.kept: dict[int, EpochOutputs] = {}
        self._batches: list[dict[str, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches = []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(outputs, dict) and "features" in outputs:
            self._batches.append({k: v.detach().float().cpu() if k != "labels" else v.detach().cpu()
                                  for k, v in outputs.items()})

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches, self._batches = self._batches, []
        if not batches or "val_acc" not in trainer.callback_metrics:
            return
        accuracy = float(trainer.callback_metrics["val_acc"])
        if any(kept.accuracy > accuracy for kept in self.kept.values()):
            return
        epoch = pl_module.recipe.epoch_offset + trainer.current_epoch + 1  # as best.pt records it
        self.kept = {e: kept for e, kept in self.kept.items() if kept.accuracy >= accuracy}
        self.kept[epoch] = EpochOutputs(accuracy, *(torch.cat([b[k] for b in batches])
                                                    for k in ("features", "logits", "labels")))

    def of_epoch(self, epoch: int | None) -> EpochOutputs | None:
        return self.kept.get(epoch) if epoch is not None else None


def _current_lr(trainer: pl.Trainer) -> float | None:
    groups = [g for opt in trainer.optimizers for g in opt.param_groups]
    return max(float(g["lr"]) for g in groups) if groups else None


class RunHistory(Callback):
    """Keeps metrics.json: one row per finished epoch, the best epoch, and wall time.

    Its state rides in every checkpoint, so a resumed run continues the same rows and clock.
    """

    def __init__(self, run: RunDir, epoch_offset: int = 0, monitor: str = "val_acc"):
        self.run = run
        self.monitor = monitor  # what the best epoch is chosen by (as best.pt is)
        self.epochs: list[dict[str, Any]] = []
        self.seconds_before = 0.0  # wall time of earlier sessions of this run (resume)
        self.epoch_offset = epoch_offset  # epochs recorded by an earlier stage of the same run
        # The clock starts when the history is made, before feature extraction: that is training time too.
        self._session_start = self._epoch_start = time.perf_counter()
        self._epoch_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        # The epoch's rate rides along: a run resumed mid-epoch does not start that epoch again.
        return {"epochs": self.epochs, "wall_seconds": self.wall_seconds, "epoch_offset": self.epoch_offset,
                "epoch_lr": self._epoch_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = list(state.get("epochs", []))
        self.seconds_before = float(state.get("wall_seconds", 0.0))
        self.epoch_offset = int(state.get("epoch_offset", self.epoch_offset))
        self._epoch_lr = state.get("epoch_lr")

    def next_stage(self) -> None:
        """The next stage of the same run numbers its epochs after those recorded so far."""
        self.epoch_offset = len(self.epochs)

    @property
    def wall_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self._session_start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        # Lightning steps epoch schedulers after the last batch, before on_train_epoch_end: read the rate now.
        self._epoch_lr = _current_lr(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics

        def value(key: str) -> float | None:
            return float(metrics[key]) if key in metrics else None

        row = {"epoch": self.epoch_offset + trainer.current_epoch + 1, "train_loss": value("train_loss"),
               "train_acc": value("train_acc"), "val_loss": value("val_loss"), "val_acc": value("val_acc"),
               "lr": self._epoch_lr, "seconds": round(time.perf_counter() - self._epoch_start, 3)}
        row.update({key: value(key) for key in EXTRA_VAL_METRICS if key in metrics})
        self.epochs = [r for r in self.epochs if r["epoch"] < row["epoch"]] + [row]
        if trainer.is_global_zero:
            self.write()

    def summary(self) -> dict[str, Any]:
        scored = [r for r in self.epochs if r.get(self.monitor) is not None]
        best = max(scored, key=lambda r: r[self.monitor], default=None)  # first epoch reaching the max
        summary = {"best_val_acc": best["val_acc"] if best else None, "best_epoch": best["epoch"] if best else None,
                   "wall_seconds": round(self.wall_seconds, 3), "epochs": self.epochs}
        if self.monitor != "val_acc":
            summary["best_epoch_by"] = self.monitor
        return summary

    def write(self) -> None:
        self.run.write_metrics(self.summary())


class SaveOnInterrupt(Callback):
    """Ctrl-C: write last.pt with the state reached so far, so ``imgcls train --resume`` continues."""

    def __init__(self, run: RunDir):
        self.run = run
        self.saved = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        last = self.run.file(RunDir.LAST)
        if not last.is_file():
            # No epoch finished yet: save what there is so the run can still be resumed.
            trainer.save_checkpoint(last, weights_only=False)
        self.saved = True
        log.warning("interrupted; last.pt holds the last finished epoch. Resume with: imgcls train --resume %s",
                    self.run.path)


# Logged by multi-label models beside val_acc (the exact-match ratio there): macro F1 at 0.5 and mAP.
EXTRA_VAL_METRICS = ("val_f1", "val_map")
SHOWN_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")


def _shown(trainer: pl.Trainer) -> dict[str, str]:
    metrics = trainer.callback_metrics
    return {k: f"{float(metrics[k]):.4f}" for k in SHOWN_METRICS if k in metrics}


class EpochProgressBar(TQDMProgressBar):
    """tqdm bars on stderr: "Epoch 3/10" counted from 1 over the whole run (all stages), one line left
    per epoch, and only the metrics a user reads (no ``v_num``)."""

    def __init__(self, total_epochs: int, epoch_offset: int = 0):
        super().__init__(leave=True)
        self.total_epochs, self.epoch_offset = total_epochs, epoch_offset

    def _bar(self, position: int, leave: bool) -> Tqdm:
        # Lightning's own bars write to stdout, which belongs to results: these go to stderr.
        return Tqdm(position=position, disable=self.is_disabled, leave=leave, dynamic_ncols=True, file=sys.stderr,
                    smoothing=0, bar_format=self.BAR_FORMAT)

    def init_train_tqdm(self) -> Tqdm:
        return self._bar(position=0, leave=True)

    def init_validation_tqdm(self) -> Tqdm:
        return self._bar(position=1, leave=False)

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_validation_batch_start(trainer, *args, **kwargs)
        self.val_progress_bar.set_description("validating")  # not "Validation DataLoader 0"

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        epoch = self.epoch_offset + trainer.current_epoch + 1
        self.train_progress_bar.set_description(f"Epoch {epoch}/{self.total_epochs}")

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return _shown(trainer)


class EpochLog(Callback):
    """One log line per epoch where no progress bar is drawn (stderr is not a terminal)."""

    def __init__(self, total_epochs: int, epoch_offset: int = 0):
        self.total_epochs, self.epoch_offset = total_epochs, epoch_offset
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            shown = "  ".join(f"{k} {v}" for k, v in _shown(trainer).items())
            log.info("epoch %d/%d  %s  (%.1f s)", self.epoch_offset + trainer.current_epoch + 1, self.total_epochs,
                     shown, time.perf_counter() - self._start)
