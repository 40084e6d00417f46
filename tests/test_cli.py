"""The real ``imgcls`` executable, end to end at tiny size: train -> evaluate -> predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from imgcls import Classifier
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def cli_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-runs")
    result = run_cli("train", tiny_data, "--model", "small_cnn", "--epochs", "2", "--batch-size", "16",
                     "--workers", "0", "--out", out, "--name", "cli", check=True)
    run = Path(result.stdout.strip().splitlines()[-1])
    assert run == out / "cli"  # the run path is printed last
    return run


def test_train_writes_the_run_directory_of_the_contract(cli_run: Path) -> None:
    for name in ("config.yaml", "classes.json", "best.pt", "last.pt", "metrics.json",
                 "curves.png", "confusion_matrix.png", "report.html"):
        assert (cli_run / name).is_file(), name
    assert json.loads((cli_run / "classes.json").read_text()) == ["checker", "stripes_h", "stripes_v"]
    metrics = json.loads((cli_run / "metrics.json").read_text())
    assert set(metrics) == {"best_val_acc", "best_epoch", "wall_seconds", "epochs"}
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    for row in metrics["epochs"]:
        assert set(row) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
        assert all(isinstance(row[k], (int, float)) for k in row)
    config = yaml.safe_load((cli_run / "config.yaml").read_text())
    assert config["model"] == "small_cnn" and config["strategy"] == "scratch" and config["epochs"] == 2
    assert config["img_size"] == 32  # from the data, for a scratch net


def test_checkpoints_are_plain_data_with_everything_to_predict(cli_run: Path) -> None:
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(cli_run / name, map_location="cpu", weights_only=True)
        meta = checkpoint["imgcls"]
        assert meta["classes"] == ["checker", "stripes_h", "stripes_v"]
        assert meta["model"]["arch"] == "small_cnn"
        assert meta["preprocess"]["img_size"] == 32


@pytest.mark.slow
def test_evaluate_json_matches_the_contract_and_the_training_record(cli_run: Path) -> None:
    result = run_cli("evaluate", cli_run, "--json", check=True)
    metrics = json.loads(result.stdout)  # stdout holds only JSON
    assert set(metrics) == {"accuracy", "macro_f1", "per_class", "confusion_matrix"}  # no top5 with 3 classes
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == 3 and sum(map(sum, matrix)) == 24
    assert metrics["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / 24)
    assert set(metrics["per_class"]["checker"]) == {"precision", "recall", "f1", "support"}
    # Checkpoint round trip: the reloaded best.pt scores exactly what training measured at its epoch.
    assert metrics["accuracy"] == pytest.approx(json.loads((cli_run / "metrics.json").read_text())["best_val_acc"])


@pytest.mark.slow
def test_predict_json_for_files_and_folders(cli_run: Path, tiny_data: Path) -> None:
    folder = tiny_data / "val" / "checker"
    one = next(tiny_data.glob("val/stripes_h/*.png"))
    result = run_cli("predict", cli_run, folder, one, "--topk", "2", "--json", check=True)
    predictions = json.loads(result.stdout)
    assert len(predictions) == 9
    assert predictions[-1]["path"] == str(one)
    for p in predictions:
        assert set(p) == {"path", "label", "score", "topk", "unknown", "ood_score"}
        assert len(p["topk"]) == 2 and p["topk"][0] == {"label": p["label"], "score": p["score"]}
        assert p["topk"][0]["score"] >= p["topk"][1]["score"]

    # The same through the Python API, from best.pt directly.
    api = Classifier.load(cli_run / "best.pt").predict(one, topk=2)
    assert api[0]["label"] == predictions[-1]["label"]
    assert api[0]["score"] == pytest.approx(predictions[-1]["score"], abs=1e-6)


@pytest.mark.parametrize(("args", "named"), [
    (["train", "/no/such/folder"], "/no/such/folder"),
    pytest.param(["train", "{data}", "--model", "resnet_18"], "resnet18", marks=pytest.mark.slow),
    (["train", "{data}", "--epochs", "-3"], "--epochs"),
    (["predict", "/no/such/run", "{data}"], "/no/such/run"),
    pytest.param(["evaluate", "{data}"], "no best.pt", marks=pytest.mark.slow),
])
def test_user_mistakes_exit_2_with_one_message(args: list[str], named: str, tiny_data: Path) -> None:
    result = run_cli(*[a.format(data=tiny_data) for a in args])
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_file_names_that_are_not_utf8_train_predict_sort_and_embed(tiny_data: Path, tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    import pyarrow.parquet as pq

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    odd = {}
    for split in ("train", "val"):
        first = sorted((data / split / "checker").iterdir())[0]
        odd[split] = os.fsdecode(os.fsencode(first.parent) + b"/caf\xe9 " + split.encode() + b".png")  # Latin-1
        os.rename(first, odd[split])
    result = run_cli("train", data, "--model", "small_cnn", "--epochs", "1", "--workers", "0", "--out",
                     tmp_path / "runs", "--name", "odd", check=True)
    run = Path(result.stdout.strip().splitlines()[-1])
    predictions, sorted_into = tmp_path / "p.csv", tmp_path / "sorted"
    for extra in (["--csv", predictions], ["--sort-into", sorted_into], ["--topk", "1"]):
        done = subprocess.run([sys.executable, "-m", "imgcls", "predict", run, data / "val", *extra],
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert os.fsencode(odd["val"]) in done.stdout + predictions.read_bytes()  # the name as it is on disk
    assert any(p.name == Path(odd["val"]).name for p in sorted_into.rglob("*.png"))
    for out in ("e.parquet", "e.npy"):
        run_cli("embed", run, data / "val", "--out", tmp_path / out, check=True)
    assert os.fsencode(odd["val"]) in (tmp_path / "e.csv").read_bytes()
    names = pq.read_table(tmp_path / "e.parquet").column("path").to_pylist()
    assert Path(odd["val"]).name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") in {
        Path(n).name for n in names}


def test_the_executable_exits_when_a_command_leaves_an_idle_thread_pool() -> None:
    # OpenVINO's export left such a pool: imgcls printed the file, then waited for ever
    import subprocess
    import sys

    script = ("import concurrent.futures, imgcls.cli as cli\n"
              "def app():\n"
              "    cli.pool = concurrent.futures.ThreadPoolExecutor(2)\n"
              "    cli.pool.submit(print, 'worked', flush=True).result()\n"
              "cli.app = app\n"
              "cli.run()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "worked\n")


def test_split_writes_train_and_val_of_every_class(tiny_data: Path, tmp_path: Path) -> None:
    from tests.helpers import run_main

    code, _, stderr = run_main("split", str(tiny_data / "train"), "--out", str(tmp_path / "split"), "--val", "0.25")
    assert code == 0, stderr[-2000:]
    for split, count in (("train", 18), ("val", 6)):
        for cls in ("checker", "stripes_h", "stripes_v"):
            assert len(list((tmp_path / "split" / split / cls).iterdir())) == count, (split, cls)
