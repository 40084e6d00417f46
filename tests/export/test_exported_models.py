"""predict and evaluate take .onnx and .ts files as MODEL, and refuse files that are not ours."""

from __future__ import annotations

import json

import pytest

from imgcls import Classifier
from imgcls.errors import CheckpointError
from imgcls.inference.predictor import Predictor
from tests.conftest import run_cli


@pytest.mark.parametrize("name", ["best.onnx", "best.ts"])
def test_evaluate_an_export_inside_a_run_uses_the_runs_data(exported_run, name):
    reference = Classifier.load(exported_run).evaluate()
    metrics = Classifier.load(exported_run / name).evaluate()
    assert metrics["accuracy"] == reference["accuracy"]
    assert metrics["confusion_matrix"] == reference["confusion_matrix"]


def test_cli_predict_json_with_an_onnx_model(exported_run, tiny_data):
    folder = tiny_data / "val" / "checker"
    result = run_cli("predict", exported_run / "best.onnx", folder, "--topk", "2", "--json", check=True)
    predictions = json.loads(result.stdout)
    expected = Classifier.load(exported_run).predict(folder, topk=2)
    assert [p["path"] for p in predictions] == [p["path"] for p in expected]
    assert [p["label"] for p in predictions] == [p["label"] for p in expected]
    for got, want in zip(predictions, expected):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert len(got["topk"]) == 2


def test_an_onnx_file_without_imgcls_metadata_is_refused(exported_run, tmp_path):
    import onnx

    model = onnx.load(str(exported_run / "best.onnx"))
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(CheckpointError, match="carries no imgcls metadata"):
        Predictor.load(plain)


@pytest.mark.parametrize("name", ["broken.onnx", "broken.ts"])
def test_a_corrupt_export_is_a_user_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00not a model\xff" * 64)
    with pytest.raises(CheckpointError, match="is not a usable"):
        Predictor.load(path)
