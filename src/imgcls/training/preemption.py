"""Preemption: a scheduler's SIGTERM (or SLURM's warning signal) ends training after the batch in
flight, with a last.pt of the step reached, so ``imgcls train --resume`` redoes nothing already done.

Lightning turns SIGTERM into ``SIGTERMException`` at the next batch boundary; :class:`SaveOnPreemption`
then writes last.pt mid-epoch (the loops record how many batches of the epoch are done) and, under a
SLURM job that asked for it, requeues the job. :func:`resume_position` reads that position back for the
epoch's sampler (data/sampling.py), which skips the samples already trained on.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from imgcls.rundir import RunDir

log = logging.getLogger(__name__)

REQUEUE_SIGNAL = signal.SIGUSR1  # what `#SBATCH --signal=SIGUSR1@90` sends before the time limit


def in_slurm_job() -> bool:
    return SLURMEnvironment.detect()


def cluster_plugins() -> list[Any]:
    """Under SLURM: Lightning's environment without its own requeue handler (it saves a second, full
    checkpoint from inside the signal handler, mid-step); :class:`SaveOnPreemption` requeues instead."""
    return [SLURMEnvironment(auto_requeue=False, requeue_signal=REQUEUE_SIGNAL)] if in_slurm_job() else []


def _slurm_job_id() -> str | None:
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{array_task}" if array_job and array_task else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


def requeue_slurm_job() -> None:
    job = _slurm_job_id()
    if job is None:
        return
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not requeue SLURM job %s (%s); resubmit it to resume", job, exc)
        return
    if done.returncode == 0:
        log.warning("requeued SLURM job %s; it resumes from last.pt when it starts again", job)
    else:
        log.warning("scontrol requeue %s failed: %s", job, done.stderr.strip() or done.returncode)


class SaveOnPreemption(pl.Callback):
    """SIGTERM (or SLURM's requeue signal): last.pt of the batch reached, then requeue under SLURM."""

    def __init__(self, run: RunDir):
        self.run = run
        self.stopped = False
        self.requeue = False
        self._previous: Any = None
        self._during_validation: Any = None  # Lightning's SIGTERM handler, while validation defers the signal
        self._deferred: tuple[int, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if in_slurm_job() and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(REQUEUE_SIGNAL, self._on_requeue_signal)

    def _on_requeue_signal(self, signum: int, frame: Any) -> None:
        # The time limit is near: stop as a SIGTERM would (Lightning's handler waits for the batch to end).
        self.requeue = True
        os.kill(os.getpid(), signal.SIGTERM)

    # Validation stopped half-way would leave the epoch without its val_acc on resume (Lightning does not
    # run it again), so a SIGTERM during validation takes effect when validation ends; a second one at once.
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread() and trainer.state.fn == "fit":
            self._during_validation = signal.signal(signal.SIGTERM, self._defer)
            self._deferred = None

    def _defer(self, signum: int, frame: Any) -> None:
        if self._deferred is not None:  # asked twice: stop now
            self._stop_now(signum, frame)
        self._deferred = (signum, frame)

    def _stop_now(self, signum: int, frame: Any) -> None:
        handler, self._during_validation = self._during_validation, None
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)
            if callable(handler):
                handler(signum, frame)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._during_validation is None:
            return
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            self._stop_now(*deferred)
        else:
            signal.signal(signal.SIGTERM, self._during_validation)
            self._during_validation = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(REQUEUE_SIGNAL, self._previous)
            self._previous = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        trainer.save_checkpoint(self.run.file(RunDir.LAST), weights_only=False)  # all ranks call, rank 0 writes
        self.stopped = True
        epochs, offset = trainer.fit_loop.epoch_progress.current, pl_module.recipe.epoch_offset
        where = (f"after batch {trainer.fit_loop.epoch_loop.batch_progress.current.completed} of epoch "
                 f"{offset + epochs.processed + 1}" if epochs.started > epochs.processed
                 else f"at the end of epoch {offset + epochs.processed}")
        log.warning("stopped by %s %s; last.pt holds that step. Resume with: imgcls train --resume %s",
                    "the SLURM time limit" if self.requeue else "SIGTERM", where, self.run.path)
        if self.requeue and trainer.is_global_zero:
            requeue_slurm_job()


def resume_position(checkpoint: dict[str, Any], batch_size: int) -> tuple[int, int] | None:
    """(epoch, samples done) of a last.pt written mid-epoch, for the sampler; None at an epoch's end."""
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    try:
        epoch = int(fit_loop["epoch_progress"]["current"]["processed"])
        batches = int(fit_loop["epoch_loop.batch_progress"]["current"]["completed"])
        started = int(fit_loop["epoch_progress"]["current"]["started"])
    except (KeyError, TypeError, ValueError):
        return None
    if batches == 0 or started <= epoch:
        return None  # the epoch in the file is over (or never began): its next one starts from the top
    return epoch, batches * batch_size
