"""Multi-label end to end on the data set composed by examples/make_multilabel.py: train (BCE on cached
features), thresholds stored in best.pt, evaluate, predict, serve and ONNX answering the same labels."""

from __future__ import annotations

import functools
import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from imgcls.api import Classifier
from imgcls.config import load_train_config
from imgcls.inference.predictor import Predictor
from imgcls.models.checkpoint import load_checkpoint
from imgcls.serve.app import create_app
from imgcls.training.fit import train
from tests.helpers import REPO


@functools.cache
def _maker() -> SimpleNamespace:
    """examples/make_multilabel.py's names (make_multilabel, CLASSES...), run once."""
    return SimpleNamespace(**runpy.run_path(str(REPO / "examples" / "make_multilabel.py")))


@pytest.fixture(scope="module")
def multilabel_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _maker().make_multilabel(tmp_path_factory.mktemp("multilabel"), size=64, train=60, val=30, test=30)


@pytest.fixture(scope="module")
def multilabel_run(multilabel_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zero flags but the input size: efficientnet_lite0, feature extraction on the cache, 10 epochs."""
    config = load_train_config(data=str(multilabel_data), img_size=64, workers=0,
                               out=str(tmp_path_factory.mktemp("runs")), name="ml")
    return train(config).path


def test_the_maker_is_deterministic_with_one_to_three_labels_per_image(tmp_path: Path):
    maker = _maker()
    first = maker.make_multilabel(tmp_path / "a", size=48, train=6, val=0, test=0)
    second = maker.make_multilabel(tmp_path / "b", size=48, train=6, val=0, test=0)
    rows = (first / "train" / "labels.csv").read_text().splitlines()
    assert rows == (second / "train" / "labels.csv").read_text().splitlines()
    assert all(1 <= len(row.split(",")[1].split()) <= 3 for row in rows[1:])
    assert (first / "train" / "train_0003.jpg").read_bytes() == (second / "train" / "train_0003.jpg").read_bytes()


def test_training_detects_the_task_and_stores_thresholds_chosen_on_val(multilabel_run: Path):
    config = (multilabel_run / "config.yaml").read_text()
    assert "task: multilabel" in config
    best = load_checkpoint(multilabel_run / "best.pt")
    assert best.info["task"] == "multilabel" and best.info["thresholds_from"] == "val"
    assert len(best.info["thresholds"]) == 5 and all(0 < t < 1 for t in best.info["thresholds"])
    metrics = json.loads((multilabel_run / "metrics.json").read_text())
    assert metrics["best_epoch_by"] == "val_map"
    best_row = metrics["epochs"][metrics["best_epoch"] - 1]
    assert best_row["val_map"] == max(r["val_map"] for r in metrics["epochs"])
    assert 0 <= metrics["best_val_acc"] <= 1  # exact-match ratio
    for picture in ("pr_curves.png", "error_cooccurrence.png", "report.html", "evaluation.json"):
        assert (multilabel_run / picture).is_file()


def test_evaluate_reports_macro_f1_and_map_and_says_where_thresholds_come_from(multilabel_run: Path, tmp_path: Path):
    classifier = Classifier.load(multilabel_run)
    test = classifier.evaluate(split="test", out=tmp_path)
    assert {"macro_f1", "micro_f1", "mAP", "accuracy"} <= set(test) and "note" not in test
    assert set(test["per_class"]) == {"ant", "bee", "circle", "square", "triangle"}
    assert {"precision", "recall", "f1", "ap", "support", "threshold"} <= set(test["per_class"]["ant"])
    assert test["mAP"] > 0.6  # well above the share of positives (chance level, about 0.4)
    assert "thresholds were chosen on this val split" in classifier.evaluate(split="val")["note"]
    assert "Precision-recall curves" in (tmp_path / "report.html").read_text()


@pytest.fixture(scope="module")
def answers(multilabel_run: Path, multilabel_data: Path) -> tuple[list[Path], list[dict]]:
    images = sorted((multilabel_data / "test").glob("*.jpg"))[:8]
    return images, [p.to_dict() for p in Predictor.load(multilabel_run).predict(images, topk=5)]


def test_predict_answers_every_label_over_its_threshold_and_serve_the_same(multilabel_run: Path, answers):
    images, answered = answers
    predictor = Predictor.load(multilabel_run)
    for answer in answered:
        assert "label" not in answer and len(answer["topk"]) == 5
        kept = [t["label"] for t in answer["labels"]]
        assert kept == [t["label"] for t in answer["topk"] if t["score"] >= _threshold(predictor, t["label"])]
    with TestClient(create_app(predictor)) as client:
        served = client.post("/predict", files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images])
    assert [[t["label"] for t in r["labels"]] for r in served.json()] == [[t["label"] for t in a["labels"]]
                                                                          for a in answered]
    assert served.json()[0]["labels"][0]["score"] == pytest.approx(answered[0]["labels"][0]["score"], abs=1e-5)


@pytest.mark.slow
def test_the_onnx_export_answers_the_same_labels(multilabel_run: Path, answers):
    images, answered = answers
    exported = Classifier.load(multilabel_run).export("onnx")
    assert exported["parity"]["max_abs_diff"] < 1e-4
    onnx = [p.to_dict() for p in Predictor.load(exported["path"]).predict(images, topk=5)]
    assert [[t["label"] for t in a["labels"]] for a in onnx] == [[t["label"] for t in a["labels"]] for a in answered]


def _threshold(predictor: Predictor, label: str) -> float:
    return float(predictor.thresholds[predictor.classes.index(label)])


@pytest.mark.slow
def test_staged_training_fine_tunes_with_bce_too(multilabel_data: Path, tmp_path: Path):
    run = train(load_train_config(data=str(multilabel_data), strategy="staged", epochs=2, img_size=64, workers=0,
                                  out=str(tmp_path), name="staged")).path
    rows = json.loads((run / "metrics.json").read_text())["epochs"]
    assert len(rows) == 2 and all(np.isfinite(r["val_loss"]) for r in rows)
    assert load_checkpoint(run / "best.pt").info["thresholds_from"] == "val"
