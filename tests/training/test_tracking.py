"""Experiment tracking, EMA, accumulation and clipping on one tiny run: ``--logger mlflow,csv`` with a local
store, ``--ema``, ``--accumulate 2``, ``--grad-clip`` and ``--lr auto`` together."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from imgcls import Classifier
from imgcls.config import config_of_run, load_train_config
from imgcls.errors import ConfigError
from imgcls.rundir import RunDir
from imgcls.training.callbacks import EpochLog, RunHistory
from imgcls.training.fit import build_trainer
from imgcls.training.tracking import check_loggers_installed, logger_names

EPOCHS = 2


@pytest.fixture(scope="module")
def tracked_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mlflow")
    out = tmp_path_factory.mktemp("tracked")
    return Classifier.train(tiny_data, model="small_cnn", epochs=EPOCHS, batch_size=16, workers=0, lr="auto",
                            ema=True, accumulate=2, grad_clip=1.0, logger="mlflow,csv", out=str(out),
                            name="tracked").path


@pytest.fixture(scope="module")
def mlflow_run(tracked_run: Path):  # noqa: ANN201 - (client, run)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient((tracked_run / "logs" / "mlruns").resolve().as_uri())
    run_id = (tracked_run / "logs" / "mlflow-run-id").read_text().strip()
    return client, client.get_run(run_id)


def history(client, run, key: str) -> list[float]:  # noqa: ANN001
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


@pytest.mark.slow
@pytest.mark.slow
def test_mlflow_local_store_records_parameters_and_each_epoch(tracked_run: Path, mlflow_run) -> None:  # noqa: ANN001
    client, run = mlflow_run
    config = yaml.safe_load((tracked_run / "config.yaml").read_text())
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert run.data.params["config/model"] == "small_cnn"
    assert float(run.data.params["config/lr"]) == pytest.approx(config["lr"])  # the lr chosen by --lr auto
    assert run.data.params["config/ema"] == "True" and run.data.params["config/accumulate"] == "2"
    for key in ("train_loss", "val_loss", "val_acc", "val_acc_ema", "val_acc_live"):
        assert len(history(client, run, key)) == EPOCHS, key


@pytest.mark.slow
def test_run_directory_is_unchanged_by_tracking(tracked_run: Path) -> None:
    for name in ("config.yaml", "classes.json", "best.pt", "last.pt", "metrics.json", "report.html"):
        assert (tracked_run / name).is_file(), name
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    assert set(metrics) == {"best_val_acc", "best_epoch", "wall_seconds", "epochs"}
    assert (tracked_run / "logs" / "csv" / "metrics.csv").is_file()
    assert not (tracked_run / "logs" / "tensorboard").exists()  # only the loggers asked for


@pytest.mark.slow
def test_lr_auto_records_the_found_rate_and_its_plot(tracked_run: Path) -> None:
    config = yaml.safe_load((tracked_run / "config.yaml").read_text())
    assert isinstance(config["lr"], float) and 1e-6 <= config["lr"] <= 1.0
    assert (tracked_run / "lr_find.png").stat().st_size > 5000
    assert json.loads((tracked_run / "lr_find.json").read_text())["suggestion"] == pytest.approx(config["lr"])


@pytest.mark.slow
@pytest.mark.slow
def test_ema_epochs_stand_for_the_better_weights(tracked_run: Path, mlflow_run) -> None:  # noqa: ANN001
    client, run = mlflow_run
    recorded = [row["val_acc"] for row in json.loads((tracked_run / "metrics.json").read_text())["epochs"]]
    ema, live = history(client, run, "val_acc_ema"), history(client, run, "val_acc_live")
    assert recorded == pytest.approx([max(e, w) for e, w in zip(ema, live)], abs=1e-6)
    best = torch.load(tracked_run / "best.pt", weights_only=True)
    assert isinstance(best["imgcls"]["ema"], bool)  # which weights best.pt holds
    assert best["imgcls"]["val_acc"] == pytest.approx(max(recorded), abs=1e-6)
    last = torch.load(tracked_run / "last.pt", weights_only=True)
    ema_state = next(s for k, s in last["callbacks"].items() if "WeightAveraging" in k)
    assert set(ema_state["ema"]) == {k[len("model."):] for k in last["state_dict"]}


@pytest.mark.slow
def test_accumulation_takes_one_step_per_two_batches(tracked_run: Path) -> None:
    last = torch.load(tracked_run / "last.pt", weights_only=True)
    batches = math.ceil(72 / 16)  # 3 classes x 24 training images
    assert last["global_step"] == EPOCHS * math.ceil(batches / 2)


def test_trainer_gets_clipping_and_accumulation(tmp_path: Path) -> None:
    config = load_train_config(data="x", grad_clip=0.5, accumulate=4, logger="none", precision="32")
    run = RunDir.create(tmp_path, "t")
    trainer = build_trainer(config, run, [RunHistory(run)], 1, EpochLog(1, 0))
    assert trainer.gradient_clip_val == 0.5 and trainer.accumulate_grad_batches == 4
    assert trainer.loggers == []


def test_logger_names_accept_lists_commas_and_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert logger_names(None) == ["tensorboard", "csv"]
    assert logger_names(["csv", "tensorboard,csv"]) == ["csv", "tensorboard"]
    assert logger_names("none") == []
    with pytest.raises(ConfigError, match="unknown logger 'comet'"):
        load_train_config(logger="comet")
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name == "wandb" else object())
    # A run recorded with a logger this machine lacks stays readable; training with it says what to install.
    recorded = config_of_run({"data": "x", "logger": ["wandb"]}, "config.yaml")
    assert recorded.logger == ["wandb"]
    with pytest.raises(ConfigError, match=r"pip install 'imgcls\[wandb\]'"):
        check_loggers_installed(recorded.logger)
