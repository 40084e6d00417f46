"""report.html: stands alone, shows what a person needs, escapes what the data names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.config import load_train_config
from imgcls.data.presets import Preprocess
from imgcls.data.source import DataSource, resolve_data
from imgcls.evaluation.evaluate import Evaluation, evaluate_predictor
from imgcls.evaluation.gallery import sample_predictions, worst_mistakes
from imgcls.evaluation.metrics import classification_metrics
from imgcls.evaluation.report import write_report
from imgcls.rundir import RunDir
from imgcls.training.fit import train
from tests.helpers import make_class_tree

EXTERNAL = re.compile(r"""(?:src|href|url)\s*[=(]\s*(?!['"]?(?:data:|#))""", re.IGNORECASE)


def html_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_run_report_stands_alone_with_every_section(tiny_run: Path) -> None:
    page = html_text(tiny_run / "report.html")
    assert page.startswith("<!doctype html>") and "<meta charset='utf-8'>" in page
    assert not EXTERNAL.search(page), "report.html must not load anything from outside"
    assert "<script" not in page and "<link" not in page
    for section in ("Per class", "Learning curves", "Confusion matrix", "Worst mistakes", "Sample predictions",
                    "Calibration", "Epochs", "Settings"):
        assert f"<h2>{section}" in page, section
    assert page.count("data:image/png;base64,") == 3  # curves, confusion matrix, reliability diagram
    for name in ("checker", "stripes_h", "stripes_v"):
        assert f"<td>{name}</td>" in page

    record = json.loads((tiny_run / "evaluation.json").read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert record["split"] == "val" and record["images"] == 24 and record["split_sizes"]["train"] == 72
    assert record["metrics"]["accuracy"] == pytest.approx(metrics["best_val_acc"])
    wrong = int(24 - np.trace(np.asarray(record["metrics"]["confusion_matrix"])))
    # Every shown thumbnail is a small inline JPEG; the gallery shows each mistake (up to 24) and a sample,
    # each mistake with its Grad-CAM overlay (a JPEG too).
    thumbnails = page.count("data:image/jpeg;base64,")
    assert page.count("class='cam'") == min(wrong, 24)
    assert thumbnails == 2 * min(wrong, 24) + 24
    assert 0 <= record["calibration"]["ece"] <= 1


def fake_evaluation(classes: list[str], n: int = 40, seed: int = 0, images: bool = True) -> Evaluation:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(classes), n)
    probs = rng.dirichlet(np.ones(len(classes)), n).astype(np.float32)
    arrays = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) if images else None
    return Evaluation("val", classes, labels, probs, None, classification_metrics(labels, probs, classes),
                      images=arrays)


def test_array_data_report_escapes_names_and_draws_thumbnails_from_the_arrays(tmp_path: Path) -> None:
    classes = ["개미", "<script>alert(1)</script>", "a&b"]
    evaluation = fake_evaluation(classes)
    source = DataSource("cifar-like", "cifar10", classes,
                        arrays={"train": (evaluation.images, evaluation.labels), "val": (evaluation.images,
                                                                                          evaluation.labels)})
    report = write_report(tmp_path / "out", evaluation, tmp_path / "model.onnx", source)
    page = html_text(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&amp;b" in page
    assert "개미" in page and "imgcls-hangul" in page  # UTF-8 text plus the embedded Hangul font
    assert page.count("data:image/jpeg;base64,") > 24  # thumbnails from the arrays (no files)
    assert (tmp_path / "out" / "confusion_matrix.png").is_file() and not (tmp_path / "out" / "curves.png").exists()


def test_worst_mistakes_are_wrong_and_sorted_by_loss_and_samples_cover_every_class() -> None:
    evaluation = fake_evaluation(["a", "b", "c", "d"], n=200, images=False)
    mistakes = worst_mistakes(evaluation, limit=10)
    assert len(mistakes) == 10 and all(evaluation.preds[i] != evaluation.labels[i] for i in mistakes)
    losses = evaluation.losses[mistakes]
    assert list(losses) == sorted(losses, reverse=True)
    wrong = evaluation.preds != evaluation.labels
    assert losses[-1] >= np.sort(evaluation.losses[wrong])[::-1][9]
    sample = sample_predictions(evaluation, limit=12)
    assert len(sample) == 12 and {evaluation.labels[i] for i in sample} == {0, 1, 2, 3}
    assert sample == sample_predictions(evaluation, limit=12)  # the same images every time


class MirrorRecorder:
    """A stand-in predictor: probabilities from the mean pixel of each image's left half."""

    classes = ["left-dark", "left-bright"]
    preprocess = Preprocess(img_size=32)
    info: dict = {}

    def __init__(self) -> None:
        self.calls = 0

    def transform(self, image):  # noqa: ANN001, ANN201
        return torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        left = batch[:, :, :, : batch.shape[3] // 2].mean(dim=(1, 2, 3))
        return torch.stack([1 - left, left], dim=1)

    def outputs(self, batch: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.probabilities(batch), None


def test_tta_averages_each_image_with_its_mirror(tmp_path: Path) -> None:
    data = make_class_tree(tmp_path / "data", ["left-dark", "left-bright"], 4)
    source = resolve_data(data, val_split=0.5)
    plain, mirrored = MirrorRecorder(), MirrorRecorder()
    once = evaluate_predictor(plain, source, "val")
    both = evaluate_predictor(mirrored, source, "val", tta=True)
    assert mirrored.calls == 2 * plain.calls and both.tta and not once.tta
    # Left half of the mirror = right half of the image, so TTA gives the whole image's mean.
    images = torch.stack([plain.transform(Image.open(p).convert("RGB")) for p in source.paths("val")])
    whole = images.mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(both.probs[:, 1], whole, atol=1e-5)


def test_a_korean_named_run_shows_hangul_in_its_report(tmp_path: Path) -> None:
    data = make_class_tree(tmp_path / "사진", ["개미", "벌"], 10)
    config = load_train_config(data=str(data), model="small_cnn", epochs=1, batch_size=8, workers=0,
                               out=str(tmp_path / "runs"), name="개미와-벌")
    run = train(config).path
    assert run.name == "개미와-벌"
    assert RunDir(run).read_classes() == ["개미", "벌"]
    page = html_text(run / "report.html")
    assert "<td>개미</td>" in page and "<td>벌</td>" in page and "imgcls report: 개미와-벌" in page
    for name in ("curves.png", "confusion_matrix.png", "reliability.png", "evaluation.json"):
        assert (run / name).is_file()
