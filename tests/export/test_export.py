"""imgcls export: files that carry their classes and preprocessing and compute what PyTorch computes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcls.errors import ExportError
from imgcls.export.exporter import export_model
from imgcls.inference.predictor import Predictor
from imgcls.models.checkpoint import load_checkpoint
from tests.helpers import REPO, run_cli

FORMATS = {"onnx": "best.onnx", "torchscript": "best.ts", "openvino": "best.xml"}


def files_of(path: Path) -> list[Path]:
    """An export's files: OpenVINO's .xml comes with its .bin."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_lands_beside_the_checkpoint_and_reports_parity(export_summaries, fmt):
    summary = export_summaries[fmt]
    assert Path(summary["path"]).name == FORMATS[fmt]
    files = files_of(Path(summary["path"]))
    assert all(f.is_file() for f in files) and summary["size_bytes"] == sum(f.stat().st_size for f in files)
    assert summary["checked_on"].endswith("val images")  # the run's data was at hand
    parity = summary["parity"]
    assert parity["max_abs_diff"] <= summary["tolerance"] == 1e-3
    assert parity["top1_agreement"] == 1.0 and parity["accuracy"] == parity["reference_accuracy"]
    assert not list(Path(summary["path"]).parent.glob(".*tmp*")), "temporary export files left behind"


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_file_alone_carries_classes_and_preprocessing(exported_run, tmp_path, fmt):
    source = load_checkpoint(exported_run / "best.pt")
    alone = tmp_path / FORMATS[fmt]
    for file in files_of(exported_run / FORMATS[fmt]):
        shutil.copy(file, tmp_path)  # no run directory, no checkpoint beside it
    predictor = Predictor.load(alone)
    assert predictor.classes == source.classes
    assert predictor.preprocess == source.preprocess
    assert predictor.backend.name == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_model_matches_pytorch_at_any_batch_size(exported_run, fmt):
    reference = Predictor.load(exported_run / "best.pt")
    exported = Predictor.load(exported_run / FORMATS[fmt])
    size = reference.preprocess.img_size
    for batch in (1, 7):  # the exporter traced with 2
        images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        expected, got = reference.probabilities(images).numpy(), exported.probabilities(images).numpy()
        assert got.shape == (batch, len(reference.classes))
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_onnx_metadata_is_readable_by_other_tools(exported_run):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(exported_run / "best.onnx")).metadata_props}
    meta = json.loads(props["imgcls"])
    assert meta["classes"] == ["checker", "stripes_h", "stripes_v"]
    assert set(meta["preprocess"]) >= {"img_size", "mean", "std", "interpolation", "crop_pct"}


@pytest.mark.slow
def test_int8_reports_accuracy_change_and_is_smaller(exported_run, tmp_path):
    # the tiny net loses a few of its 24 val images to int8; the drop guard is not what this checks
    summary = export_model(exported_run, "onnx", quantize="int8", out=tmp_path, max_accuracy_drop=1.0)
    assert Path(summary.path).name == "best.int8.onnx"
    assert summary.int8 is not None and summary.int8.images == summary.parity.images
    assert summary.int8.accuracy is not None and summary.int8.reference_accuracy is not None
    assert summary.size_bytes < (exported_run / "best.onnx").stat().st_size
    assert Predictor.load(summary.path).classes == load_checkpoint(exported_run / "best.pt").classes


def test_without_the_runs_data_parity_uses_random_inputs(exported_run, tmp_path):
    lone = tmp_path / "model.pt"  # a checkpoint outside any run: its data is unknown
    shutil.copy(exported_run / "best.pt", lone)
    summary = export_model(lone, "torchscript")
    assert summary.path == tmp_path / "model.ts"
    assert "random inputs" in summary.checked_on and summary.parity.accuracy is None
    assert summary.parity.max_abs_diff <= 1e-3


def test_an_export_that_does_not_match_fails_and_leaves_no_file(exported_run, tmp_path, monkeypatch):
    import imgcls.export.to_torchscript as to_torchscript

    real_export = to_torchscript.export_torchscript

    def broken(network, meta, path):  # noqa: ANN001 - what a buggy exporter would write
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(0.5)
        real_export(network, meta, path)

    monkeypatch.setattr(to_torchscript, "export_torchscript", broken)
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_model(exported_run, "torchscript", out=tmp_path / "broken.ts")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt": "tflite"}, "unknown export format"),
    ({"fmt": "torchscript", "quantize": "int8"}, "works with --format onnx"),
    ({"fmt": "onnx", "quantize": "int4"}, "unknown quantization"),
    ({"fmt": "onnx", "out": "model.ts"}, "must end in .onnx"),
])
def test_bad_export_requests_are_user_errors(exported_run, tmp_path, kwargs, message):
    if "out" in kwargs:
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(ExportError, match=message):
        export_model(exported_run, **kwargs)


def test_an_exported_file_cannot_be_exported_again(exported_run):
    with pytest.raises(ExportError, match="already an exported model"):
        export_model(exported_run / "best.onnx", "torchscript")


@pytest.mark.slow
def test_cli_export_prints_the_path_last_and_exits_2_on_mistakes(exported_run, tmp_path):
    ok = run_cli("export", exported_run, "--format", "torchscript", "--out", tmp_path, check=True)
    assert ok.stdout.strip().splitlines()[-1] == str(tmp_path / "best.ts")
    assert "max |diff|" in ok.stderr

    bad = run_cli("export", exported_run, "--format", "tflite")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--format onnx" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_exports_output_the_ood_score_and_answer_unknown_as_pytorch_does(exported_run, export_summaries):
    import onnx

    glyphs = REPO / "examples" / "ood" / "glyphs"
    assert [o.name for o in onnx.load(str(exported_run / "best.onnx")).graph.output] == ["logits", "ood_score"]
    torch_rows = Predictor.load(exported_run / "best.pt", reject_rate=0.5).predict(glyphs)
    for fmt, name in FORMATS.items():
        assert export_summaries[fmt]["parity"]["ood_max_abs_diff"] < 1e-4
        rows = Predictor.load(exported_run / name, reject_rate=0.5).predict(glyphs)
        assert [p.unknown for p in rows] == [p.unknown for p in torch_rows]
        assert [p.ood_score for p in rows] == pytest.approx([p.ood_score for p in torch_rows], abs=1e-4)
