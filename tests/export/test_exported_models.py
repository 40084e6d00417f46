"""predict and evaluate take .onnx and .ts files as MODEL, and refuse files that are not ours."""

from __future__ import annotations

import json

import pytest

from imgcls import Classifier
from imgcls.errors import CheckpointError
from imgcls.inference.predictor import Predictor
from tests.helpers import run_cli


@pytest.mark.parametrize("name", ["best.onnx", "best.ts", "best.xml"])
def test_evaluate_an_export_inside_a_run_uses_the_runs_data(exported_run, name):
    reference = Classifier.load(exported_run).evaluate()
    metrics = Classifier.load(exported_run / name).evaluate()
    assert metrics["accuracy"] == reference["accuracy"]
    assert metrics["confusion_matrix"] == reference["confusion_matrix"]


@pytest.mark.slow
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


@pytest.mark.parametrize("name", ["broken.onnx", "broken.ts", "broken.xml"])
def test_a_corrupt_export_is_a_user_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00not a model\xff" * 64)
    path.with_suffix(".bin").write_bytes(b"\x00" * 64)  # OpenVINO's weights file, beside the .xml
    with pytest.raises(CheckpointError, match="is not (a usable|an OpenVINO)"):
        Predictor.load(path)


@pytest.mark.parametrize("name", ["best.onnx", "best.xml"])
def test_folder_prediction_one_thread_per_core_matches_the_run(exported_run, tiny_data, tmp_path, caplog, name):
    """More images than one slice: the ONNX and OpenVINO backends decode and runs slices on every core at once; the
    answers, their order and the skipped broken file must be those of the run itself."""
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(tiny_data / "val", folder)
    (folder / "checker" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    exported = Predictor.load(exported_run / name)
    assert exported.backend.per_core() is not None
    with caplog.at_level("WARNING"):
        got = exported.predict(folder, topk=3)
    want = Predictor.load(exported_run).predict(folder, topk=3)
    assert len(got) == len(want) == 24
    assert [p.path for p in got] == [p.path for p in want]
    assert [p.label for p in got] == [p.label for p in want]
    assert max(abs(a.score - b.score) for a, b in zip(got, want)) < 1e-4
    assert "broken.jpg" in caplog.text
