"""``imgcls compare``: a table and a plot of runs, read from their run directories alone."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from imgcls import api
from imgcls.config import load_train_config
from imgcls.errors import RunDirError
from imgcls.training.fit import train


@pytest.fixture(scope="module")
def second_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another run on tiny_run's data that differs in its learning rate and epochs (the latter has its own column)."""
    config = load_train_config(data=str(tiny_data), model="small_cnn", epochs=2, batch_size=16, lr=1e-3, workers=0,
                               out=str(tmp_path_factory.mktemp("runs")), name="slow-lr")
    return train(config).path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_compare_writes_table_and_plot_of_the_runs(tiny_run: Path, second_run: Path, tmp_path: Path) -> None:
    rows = api.compare([tiny_run, second_run], tmp_path / "cmp")
    assert [r["run"] for r in rows] == ["tiny", "slow-lr"]
    table = read_csv(tmp_path / "cmp" / "table.csv")
    assert list(table[0])[:4] == ["run", "path", "model", "strategy"]
    assert {"lr", "epochs", "best_val_acc", "macro_f1", "wall_seconds", "images_per_second"} <= set(table[0])
    assert "batch_size" not in table[0]  # the same in both runs: not a column
    for row, run in zip(table, (tiny_run, second_run)):
        metrics = json.loads((run / "metrics.json").read_text())
        record = json.loads((run / "evaluation.json").read_text())
        assert float(row["best_val_acc"]) == pytest.approx(metrics["best_val_acc"])
        assert float(row["macro_f1"]) == pytest.approx(record["metrics"]["macro_f1"])
        assert int(row["epochs"]) == len(metrics["epochs"])
        # images/s: training images x epochs / wall time
        assert float(row["images_per_second"]) == pytest.approx(72 * len(metrics["epochs"]) / metrics["wall_seconds"])
    markdown = (tmp_path / "cmp" / "table.md").read_text(encoding="utf-8")
    assert "| run | model | strategy | lr | best val acc |" in markdown and "| tiny |" in markdown
    assert (tmp_path / "cmp" / "val_accuracy.png").stat().st_size > 10_000
    assert "<h1>imgcls compare: 2 runs</h1>" in (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")


def test_a_run_without_evaluation_json_is_evaluated_and_a_folder_of_runs_expands(tiny_run: Path, tmp_path: Path
                                                                                 ) -> None:
    copy = tmp_path / "runs" / "copy"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("eval-*", "logs"))
    (copy / "evaluation.json").unlink()
    rows = api.compare([tmp_path / "runs"], tmp_path / "runs" / "cmp")
    expected = json.loads((tiny_run / "evaluation.json").read_text())["metrics"]["macro_f1"]
    assert len(rows) == 1 and rows[0]["macro_f1"] == pytest.approx(expected)
    # Again, now that runs/ also holds the output folder: it is not taken for a run.
    assert len(api.compare([tmp_path / "runs"], tmp_path / "runs" / "cmp")) == 1


def test_compare_refuses_what_is_not_a_run(tiny_data: Path, tmp_path: Path, imgcls_main: Callable) -> None:
    with pytest.raises(RunDirError, match="not an imgcls run directory"):
        api.compare([tiny_data], tmp_path / "cmp")
    code, stdout, stderr = imgcls_main("compare", "/no/such/run", "--out", tmp_path / "cmp")
    assert code == 2 and stdout == "" and "/no/such/run" in stderr and "Traceback" not in stderr
