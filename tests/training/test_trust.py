"""After training, best.pt carries a temperature and an OOD threshold fitted on val; every later stage uses them,
and models without them (older checkpoints, --no-calibrate) still work."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from imgcls.config import load_train_config
from imgcls.export.exporter import export_model
from imgcls.inference.predictor import Predictor
from imgcls.models.checkpoint import load_checkpoint
from imgcls.training.fit import train
from tests.conftest import ANTS_BEES, REPO, run_cli

OOD_EXAMPLES = REPO / "examples" / "ood"


def test_best_checkpoint_records_calibration_and_ood_as_plain_data(tiny_run: Path) -> None:
    raw = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)
    calibration, ood = raw["imgcls"]["calibration"], raw["imgcls"]["ood"]
    assert calibration["temperature"] > 0 and calibration["fitted_on"].startswith("val (24 images)")
    assert 0 <= calibration["ece"] <= 1 and 0 <= calibration["ece_before"] <= 1
    assert ood["method"] == "class-mean-cosine" and ood["accept_rate"] == 0.95
    assert ood["class_means"].shape[0] == 3 and len(ood["val_quantiles"]) == 24


def test_predictions_say_unknown_and_the_share_of_val_images_rejected_follows_reject_rate(tiny_run: Path,
                                                                                         tiny_data: Path) -> None:
    rows = [p.to_dict() for p in Predictor.load(tiny_run).predict(tiny_data / "val")]
    assert all(isinstance(r["unknown"], bool) and isinstance(r["ood_score"], float) for r in rows)
    assert sum(r["unknown"] for r in rows) <= 0.05 * len(rows) + 1e-9  # the threshold accepts 95% of val
    strict = Predictor.load(tiny_run, reject_rate=0.5).predict(tiny_data / "val")
    assert 0.3 <= sum(p.unknown for p in strict) / len(strict) <= 0.55
    assert not any(p.unknown for p in Predictor.load(tiny_run, reject_rate=None).predict(tiny_data / "val"))


def test_a_checkpoint_without_calibration_or_ood_data_still_predicts(tiny_run: Path, tmp_path: Path) -> None:
    raw = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)
    del raw["imgcls"]["calibration"], raw["imgcls"]["ood"]
    old = tmp_path / "old.pt"
    buffer = io.BytesIO()
    torch.save(raw, buffer)
    old.write_bytes(buffer.getvalue())
    rows = run_cli("predict", old, OOD_EXAMPLES / "digits", "--json", check=True)
    assert all(r["unknown"] is False and r["ood_score"] is None for r in json.loads(rows.stdout))


def test_exports_output_the_ood_score_and_answer_unknown_as_pytorch_does(tiny_run: Path, tmp_path: Path) -> None:
    import onnx

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("logs", "last.pt"))
    summary = export_model(run, "onnx")
    assert summary.parity.ood_max_abs_diff is not None and summary.parity.ood_max_abs_diff < 1e-4
    assert [o.name for o in onnx.load(str(summary.path)).graph.output] == ["logits", "ood_score"]
    torch_rows = Predictor.load(run, reject_rate=0.5).predict(OOD_EXAMPLES / "glyphs")
    onnx_rows = Predictor.load(summary.path, reject_rate=0.5).predict(OOD_EXAMPLES / "glyphs")
    assert [p.unknown for p in onnx_rows] == [p.unknown for p in torch_rows]
    assert [p.ood_score for p in onnx_rows] == pytest.approx([p.ood_score for p in torch_rows], abs=1e-4)


def test_no_calibrate_leaves_the_logits_as_trained(tiny_data: Path, tmp_path: Path) -> None:
    config = load_train_config(data=str(tiny_data), model="small_cnn", epochs=1, batch_size=16, workers=0,
                               out=str(tmp_path), name="raw", calibrate=False)
    run = train(config).path
    info = load_checkpoint(run / "best.pt").info
    assert "calibration" not in info and info["ood"]["method"] == "class-mean-cosine"
    record = json.loads((run / "evaluation.json").read_text())
    assert record["calibration"]["ece_before"] == record["calibration"]["ece"]


def test_evaluate_ood_reports_auroc_rejected_and_accepted_known(tiny_run: Path, tmp_path: Path) -> None:
    result = run_cli("evaluate", tiny_run, "--ood", OOD_EXAMPLES, "--out", tmp_path, "--json", check=True)
    ood = json.loads(result.stdout)["ood"]
    assert 0 <= ood["auroc"] <= 1 and 0 <= ood["rejected"] <= 1 and ood["images"] == 48
    assert ood["accepted_known"] >= 0.95 and set(ood["per_folder"]) == {"digits", "glyphs", "photos", "textures"}
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert record["ood"]["auroc"] == ood["auroc"]
    assert {"ece", "ece_before", "temperature", "fitted_on", "bins_before"} <= set(record["calibration"])
    page = (tmp_path / "report.html").read_text()
    assert "Unknown answers" in page and "before calibration" in page


@pytest.mark.slow
def test_an_ants_bees_model_calls_other_pictures_unknown(tmp_path: Path) -> None:
    """The real thing, small: efficientnet_lite0 on a third of the bundled photos, against examples/ood."""
    data = tmp_path / "ants_bees"
    for split, keep in (("train", 40), ("val", 30)):
        for kind in ("ants", "bees"):
            (data / split / kind).mkdir(parents=True)
            for path in sorted((ANTS_BEES / split / kind).glob("*.jpg"))[:keep]:
                shutil.copy(path, data / split / kind / path.name)
    run = train(load_train_config(data=str(data), epochs=3, workers=0, out=str(tmp_path / "runs"))).path
    calibration = load_checkpoint(run / "best.pt").info["calibration"]
    assert calibration["ece"] <= 0.1
    predictor = Predictor.load(run)
    strangers = predictor.predict(OOD_EXAMPLES)
    assert sum(p.unknown for p in strangers) >= 0.85 * len(strangers)
    known = predictor.predict(data / "val")
    assert sum(not p.unknown for p in known) >= 0.95 * len(known)
    text = run_cli("predict", run, OOD_EXAMPLES / "glyphs", check=True).stdout
    assert "unknown (closest: " in text
