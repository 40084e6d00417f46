"""Experiment tracking: ``--logger tensorboard,csv,wandb,mlflow`` -> Lightning loggers.

Every logger gets the run's settings (config.yaml) as hyper-parameters and the per-epoch metrics;
the run directory (docs/run-directory.md) is unchanged (loggers write under ``RUN/logs/``).

- tensorboard, csv (default): ``RUN/logs/tensorboard``, ``RUN/logs/csv``.
- mlflow: tracking URI from ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a local file store
  ``RUN/logs/mlruns`` (``mlflow ui --backend-store-uri RUN/logs/mlruns``); experiment ``--experiment``
  (default ``imgcls``), run name = the run directory's name.
- wandb: offline unless ``WANDB_MODE=online`` (``wandb sync RUN/logs/wandb/offline-run-*`` uploads later);
  project ``--experiment`` (default ``imgcls``).
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

from imgcls.config import logger_names
from imgcls.errors import ConfigError
from imgcls.rundir import RunDir

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

EXTRAS = {"wandb": ("wandb", "imgcls[wandb]"), "mlflow": ("mlflow", "imgcls[mlflow]")}
DEFAULT_EXPERIMENT = "imgcls"


def check_loggers_installed(names: list[str]) -> None:
    """A logger whose package is missing fails when training starts, with the command that installs it."""
    for name in names:
        module, extra = EXTRAS.get(name, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(f"--logger {name} needs the {module} package; install it: pip install '{extra}'")


def _mlflow_logger(run: RunDir, experiment: str, tracking_uri: str | None) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or (run.file(RunDir.LOGS) / "mlruns").resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        # mlflow 3 keeps the file store in maintenance mode behind this switch; it is what works offline with no
        # database. A team server or sqlite:/// URI is used as given.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    class RepeatableMLFlowLogger(MLFlowLogger):
        """MLflow refuses to change a logged parameter; a second stage or a resumed run logs its settings
        again, so values already recorded are skipped instead of failing the run."""

        def log_hyperparams(self, params: Any) -> None:
            from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

            flat = _flatten_dict(_convert_params(params))
            logged = self.experiment.get_run(self.run_id).data.params
            fresh = {k: v for k, v in flat.items() if k not in logged}
            if fresh:
                super().log_hyperparams(fresh)

    # One MLflow run per run directory: later stages and --resume continue it.
    id_file = run.file(RunDir.LOGS) / "mlflow-run-id"
    run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else None
    logger = RepeatableMLFlowLogger(experiment_name=experiment, run_name=run.path.name, tracking_uri=uri,
                                    run_id=run_id, tags={"imgcls.run_dir": str(run.path.resolve())})
    if run_id is None:
        from imgcls.rundir import atomic_write_text

        atomic_write_text(id_file, logger.run_id)
    return logger


def _wandb_logger(run: RunDir, experiment: str) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    offline = os.environ.get("WANDB_MODE", "offline").lower() in ("offline", "dryrun", "disabled")
    save_dir = run.file(RunDir.LOGS)
    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=experiment, name=run.path.name, save_dir=str(save_dir), offline=offline)


def make_loggers(config: Any, run: RunDir) -> list[Logger]:
    """The Lightning loggers ``config.logger`` names, each given the run's settings as hyper-parameters."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    names = logger_names(getattr(config, "logger", None))
    check_loggers_installed(names)
    experiment = getattr(config, "experiment", None) or DEFAULT_EXPERIMENT
    loggers: list[Logger] = []
    for name in names:
        if name == "tensorboard":
            logger: Logger = TensorBoardLogger(run.path, name=RunDir.LOGS, version="tensorboard", default_hp_metric=False)
        elif name == "csv":
            logger = CSVLogger(run.path, name=RunDir.LOGS, version="csv")
        elif name == "mlflow":
            logger = _mlflow_logger(run, experiment, getattr(config, "tracking_uri", None))
        else:
            logger = _wandb_logger(run, experiment)
        if name in EXTRAS:  # tracking servers get the whole config.yaml; TensorBoard/CSV get the module's hparams
            logger.log_hyperparams({"config": config.model_dump()})
        loggers.append(logger)
    return loggers
