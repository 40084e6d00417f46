"""After training, best.pt carries a temperature and an OOD threshold fitted on val; every later stage uses them,
and models without them (older checkpoints, --no-calibrate) still work."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from imgcls.api import Classifier
from imgcls.config import load_train_config
from imgcls.data.source import resolve_data
from imgcls.evaluation.report import write_run_report
from imgcls.inference.predictor import Predictor
from imgcls.models.checkpoint import load_checkpoint
from imgcls.rundir import RunDir
from imgcls.training.trust import fit_trust
from tests.helpers import REPO, run_cli

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
    rows = [p.to_dict() for p in Predictor.load(old).predict(OOD_EXAMPLES / "digits")]
    assert rows and all(r["unknown"] is False and r["ood_score"] is None for r in rows)


@pytest.mark.slow
def test_predict_text_and_the_server_answer_unknown_alike(tiny_run: Path, tiny_data: Path) -> None:
    from fastapi.testclient import TestClient

    from imgcls.serve.app import create_app

    folder = tiny_data / "val" / "checker"
    text = run_cli("predict", tiny_run, folder, "--reject-rate", "0.6", check=True).stdout.splitlines()
    unknown_by_cli = {Path(line.split("\t")[0]).name: "\tunknown (closest: " in line for line in text}
    assert any(unknown_by_cli.values())
    with TestClient(create_app(Predictor.load(tiny_run, reject_rate=0.6))) as client:
        for path in sorted(folder.glob("*.png")):
            answer = client.post("/predict", files={"file": (path.name, path.read_bytes())}).json()
            assert answer["unknown"] == unknown_by_cli[path.name] and isinstance(answer["ood_score"], float)


@pytest.mark.slow
def test_no_calibrate_leaves_the_logits_as_trained(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "raw"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("logs", "last.pt", "eval-*"))
    config = load_train_config(data=str(tiny_data), model="small_cnn", workers=0, calibrate=False)
    source = resolve_data(str(tiny_data))
    raw = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    del raw["imgcls"]["calibration"], raw["imgcls"]["ood"]  # best.pt as training leaves it, before fit_trust
    torch.save(raw, run / "best.pt")
    fit_trust(RunDir(run), config, source)
    info = load_checkpoint(run / "best.pt").info
    assert "calibration" not in info and info["ood"]["method"] == "class-mean-cosine"
    write_run_report(RunDir(run), source=source)
    record = json.loads((run / "evaluation.json").read_text())
    assert record["calibration"]["ece_before"] == record["calibration"]["ece"]
    assert record["calibration"]["temperature"] == 1.0


def test_evaluate_ood_reports_auroc_rejected_and_accepted_known(tiny_run: Path, tmp_path: Path) -> None:
    ood = Classifier.load(tiny_run).evaluate(ood=OOD_EXAMPLES, out=tmp_path)["ood"]
    assert 0 <= ood["auroc"] <= 1 and 0 <= ood["rejected"] <= 1 and ood["images"] == 48
    assert ood["accepted_known"] >= 0.95 and set(ood["per_folder"]) == {"digits", "glyphs", "photos", "textures"}
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert record["ood"]["auroc"] == ood["auroc"]
    assert {"ece", "ece_before", "temperature", "fitted_on", "bins_before"} <= set(record["calibration"])
    page = (tmp_path / "report.html").read_text()
    assert "Unknown answers" in page and "before calibration" in page


def test_calibration_from_the_best_epochs_validation_matches_a_second_pass_over_val(
        tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training keeps what validation computed for best.pt's epoch: the temperature, class means and "unknown"
    threshold fitted from it are those a separate pass of best.pt over val gives, and val is not run again."""
    from imgcls.training import trust
    from imgcls.training.fit import train

    passes: list[str] = []
    embeddings = trust._embeddings

    def counted(model, source, split, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        passes.append(split)
        return embeddings(model, source, split, *args, **kwargs)

    monkeypatch.setattr(trust, "_embeddings", counted)
    config = load_train_config(data=str(tiny_data), model="small_cnn", epochs=3, batch_size=16, lr=3e-3,
                               workers=0, out=str(tmp_path), name="kept")
    run = train(config).path
    assert passes == ["train"]  # the class means need the training images; val came from validation
    fitted = load_checkpoint(run / "best.pt").info

    raw = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    del raw["imgcls"]["calibration"], raw["imgcls"]["ood"]
    buffer = io.BytesIO()
    torch.save(raw, buffer)
    (run / "best.pt").write_bytes(buffer.getvalue())
    fit_trust(RunDir(run), config, resolve_data(str(tiny_data)))
    again = load_checkpoint(run / "best.pt").info
    assert passes == ["train", "val", "train"]
    assert again["calibration"]["temperature"] == pytest.approx(fitted["calibration"]["temperature"], rel=1e-4)
    assert again["ood"]["threshold"] == pytest.approx(fitted["ood"]["threshold"], rel=1e-4, abs=1e-6)
    assert torch.allclose(torch.as_tensor(again["ood"]["class_means"]), torch.as_tensor(fitted["ood"]["class_means"]),
                          atol=1e-5)
