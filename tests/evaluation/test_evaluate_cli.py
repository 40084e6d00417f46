"""``imgcls evaluate``: JSON as docs/output.md gives it, consistent with itself, a report for any split."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgcls import Classifier
from imgcls.evaluation.evaluate import default_report_dir
from tests.helpers import make_class_tree, run_cli


@pytest.mark.slow
def test_evaluate_json_is_the_contract_and_consistent_with_itself(tiny_run: Path) -> None:
    result = run_cli("evaluate", tiny_run, "--json", check=True)
    metrics = json.loads(result.stdout)  # stdout is JSON only
    assert set(metrics) == {"accuracy", "macro_f1", "per_class", "confusion_matrix"}  # 3 classes: no top5
    matrix = np.asarray(metrics["confusion_matrix"])
    n = matrix.sum()
    assert n == 24 and metrics["accuracy"] == pytest.approx(np.trace(matrix) / n)
    assert sum(v["support"] for v in metrics["per_class"].values()) == n
    f1 = [v["f1"] for v in metrics["per_class"].values()]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))
    assert "report:" in result.stderr
    report = tiny_run / "eval-val" / "report.html"
    assert report.is_file() and (tiny_run / "eval-val" / "confusion_matrix.png").is_file()
    record = json.loads((tiny_run / "eval-val" / "evaluation.json").read_text())
    assert record["metrics"] == metrics


@pytest.fixture(scope="module")
def data_with_test(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("with-test")
    for split in ("train", "val"):
        shutil.copytree(tiny_data / split, root / split)
    return make_class_tree(root / "test", ["checker", "stripes_h", "stripes_v"], 5, seed=7).parent


def test_evaluate_a_test_split_with_tta_writes_the_report_where_asked(
        tiny_run: Path, data_with_test: Path, tmp_path: Path, imgcls_main: Callable) -> None:
    out = tmp_path / "eval"
    code, stdout, _ = imgcls_main("evaluate", tiny_run / "best.pt", "--data", data_with_test, "--split", "test",
                                  "--tta", "--out", out)
    assert code == 0
    assert "precision" in stdout and "stripes_v" in stdout and "accuracy" in stdout
    record = json.loads((out / "evaluation.json").read_text())
    assert record["split"] == "test" and record["tta"] is True and record["images"] == 15
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "test split, 15 images" in page and "mirror image" in page
    # The API gives the same numbers.
    api = Classifier.load(tiny_run).evaluate(data_with_test, split="test", tta=True)
    assert api == record["metrics"]


def test_default_report_folders_do_not_overwrite_each_other(tiny_run: Path, tmp_path: Path) -> None:
    assert default_report_dir(tiny_run, "val") == tiny_run / "eval-val"
    assert default_report_dir(tiny_run / "best.pt", "test") == tiny_run / "eval-test"
    assert default_report_dir(tiny_run / "last.pt", "val") == tiny_run / "eval-val-last.pt"
    assert default_report_dir(tiny_run, "val", "/data/사진", tta=True) == tiny_run / "eval-val-사진-tta"
    outside = tmp_path / "model.onnx"
    assert default_report_dir(outside, "val") == tmp_path / "eval-val-model.onnx"


@pytest.mark.parametrize(("args", "named"), [
    (["--split", "test"], "test"),              # tiny_data has no test/ split
    (["--split", "train"], "--split"),
    (["--data", "/no/such/data"], "/no/such/data"),
    (["--out", "{run}/config.yaml"], "--out"),  # a file where the report folder should go
])
def test_evaluate_mistakes_exit_2_with_one_line(args: list[str], named: str, tiny_run: Path,
                                                imgcls_main: Callable) -> None:
    code, stdout, stderr = imgcls_main("evaluate", tiny_run, *[a.format(run=tiny_run) for a in args])
    assert code == 2 and stdout == ""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and named in lines[0]


def test_a_checkpoint_outside_a_run_needs_data(tiny_run: Path, tmp_path: Path, imgcls_main: Callable) -> None:
    loose = tmp_path / "model.pt"
    shutil.copy(tiny_run / "best.pt", loose)
    code, _, stderr = imgcls_main("evaluate", loose)
    assert code == 2 and "--data" in stderr
