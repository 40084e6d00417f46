"""Data-parallel training through Lightning's DDP: which process writes the run, and how ranks agree on it.

Every process of a distributed run executes the whole ``imgcls train`` command (Lightning's own
launcher re-runs it with ``LOCAL_RANK`` set; ``torchrun`` and SLURM start all processes at once), so
everything before ``trainer.fit`` runs once per process. The run directory must still be one:

- the process of global rank 0 creates it (``runs/NAME``, ``NAME-2`` when taken) and writes its files;
- processes started later by Lightning's launcher inherit its path through ``IMGCLS_RUN_DIR``;
- processes started together by an outside launcher (torchrun, srun, several nodes) read its path from a
  small marker file rank 0 writes beside it in ``--out`` (a shared folder, as multi-node training needs).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from imgcls.cache import content_key
from imgcls.errors import ConfigError
from imgcls.rundir import RunDir, atomic_write_text

log = logging.getLogger(__name__)

RUN_DIR_ENV = "IMGCLS_RUN_DIR"
DEVICES_ENV = "IMGCLS_DEVICES_PER_NODE"
MARKER_WAIT_SECONDS = 600.0
_STARTED = time.time()


def global_rank() -> int:
    """This process's rank as the launchers announce it (before any process group exists)."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    # Lightning's own launcher (and a hand-started node): NODE_RANK x processes per node + LOCAL_RANK.
    local, node = os.environ.get("LOCAL_RANK", "0"), os.environ.get("NODE_RANK", "0")
    per_node = os.environ.get(DEVICES_ENV, "1")
    if local.isdigit() and node.isdigit() and per_node.isdigit():
        return int(node) * int(per_node) + int(local)
    return 0


def is_rank_zero() -> bool:
    return global_rank() == 0


def externally_launched() -> bool:
    """Started with its peers by torchrun / srun (they set RANK or SLURM_PROCID), not by Lightning."""
    slurm_tasks = os.environ.get("SLURM_NTASKS", "1")
    return (os.environ.get("TORCHELASTIC_RUN_ID") is not None and os.environ.get("WORLD_SIZE", "1") != "1") or (
        slurm_tasks.isdigit() and int(slurm_tasks) > 1 and "SLURM_PROCID" in os.environ)


def _launch_id(out: Path, name: str) -> str:
    """Equal in every process of one launch, different between launches that might share ``out``."""
    keys = ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "SLURM_STEP_ID")
    return content_key(str(out.resolve()), name, *(os.environ.get(k) for k in keys))


def marker_path(out: str | Path, name: str) -> Path:
    return Path(out) / f".imgcls-launch-{_launch_id(Path(out), name)}"


def create_run_dir(out: str | Path, name: str, devices: int = 1, num_nodes: int = 1) -> RunDir:
    """The run directory of this process: created by rank 0, shared with every other rank."""
    os.environ[DEVICES_ENV] = str(devices)  # lets global_rank() place LOCAL_RANK on its node
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and not is_rank_zero():
        return RunDir(inherited)
    if devices * num_nodes == 1:
        return RunDir.create(out, name)
    if is_rank_zero():
        run = RunDir.create(out, name)
        os.environ[RUN_DIR_ENV] = str(run.path.resolve())  # Lightning's launcher copies the environment
        if externally_launched() or num_nodes > 1:
            atomic_write_text(marker_path(out, name), str(run.path.resolve()))
        return run
    return RunDir(wait_for_marker(marker_path(out, name)))


def wait_for_marker(marker: Path, timeout: float = MARKER_WAIT_SECONDS) -> str:
    """The run path rank 0 published; markers older than this process (an earlier launch) are ignored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if marker.stat().st_mtime >= _STARTED - 300:
                return marker.read_text(encoding="utf-8").strip()
        except OSError:
            pass
        time.sleep(0.2)
    raise ConfigError(f"rank {global_rank()} waited {timeout:.0f} s for rank 0 to create the run directory "
                      f"({marker}); give every node the same shared --out folder")


def finish_launch(out: str | Path, name: str) -> None:
    """Rank 0 removes its marker once training ended, so a later launch cannot pick it up."""
    if is_rank_zero():
        marker_path(out, name).unlink(missing_ok=True)


def trainer_strategy(processes: int) -> Any:
    """"ddp" for several processes (NCCL on GPUs, gloo on CPU, chosen by Lightning), else Lightning's default.

    Plain DDP re-runs the command in each process (or joins torchrun/srun peers); unlike ddp_spawn it
    pickles nothing and keeps every callback's state in its own process.
    """
    return "ddp" if processes > 1 else "auto"


class ProcessCount(pl.Callback):
    """Says in the log how many processes train and how, once, from rank 0."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1 and trainer.is_global_zero:
            strategy = trainer.strategy
            backend = getattr(strategy, "_get_process_group_backend", lambda: "?")()
            log.info("distributed: %d processes (%d per node x %d nodes), %s with %s; batch %d per process, "
                     "%d in all", trainer.world_size, trainer.num_devices, trainer.num_nodes,
                     type(strategy).__name__, backend, _batch_size(trainer), _batch_size(trainer) * trainer.world_size)


def _batch_size(trainer: pl.Trainer) -> int:
    datamodule = getattr(trainer, "datamodule", None)
    return int(getattr(datamodule, "batch_size", 0) or 0)


def quiet_other_ranks() -> None:
    """Non-zero ranks log warnings only: one process tells the story."""
    if not is_rank_zero():
        logging.getLogger("imgcls").setLevel(logging.WARNING)
