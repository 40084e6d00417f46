"""report.html: Grad-CAM overlays on the worst mistakes (PyTorch models) and the suspect-labels section."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgcls.data.source import resolve_data
from imgcls.evaluation.evaluate import evaluation_from_probabilities
from imgcls.evaluation.report import write_report
from imgcls.rundir import RunDir


def _all_wrong(tiny_data: Path, classes: list[str]):  # noqa: ANN202
    source = resolve_data(tiny_data)
    labels = np.array(source.labels("val"))
    probs = np.full((len(labels), len(classes)), 0.05)
    probs[np.arange(len(labels)), (labels + 1) % len(classes)] = 0.9
    return source, evaluation_from_probabilities(probs, classes, source)


def test_report_shows_where_the_model_looked_on_each_shown_mistake(tiny_run: Path, tiny_data: Path,
                                                                   tmp_path: Path) -> None:
    run = RunDir(tiny_run)
    source, evaluation = _all_wrong(tiny_data, run.read_classes())
    suspects = [{"path": source.paths("train")[0], "given": "checker", "likely": "stripes_v", "likely_prob": 0.93,
                 "quality": 0.05}]
    html = write_report(tmp_path, evaluation, run.best_checkpoint, source, run, suspects).read_text()
    mistakes = html.split("Worst mistakes")[1].split("Sample predictions")[0]
    assert mistakes.count("class='cam'") == min(24, len(evaluation.labels))
    section = html.split("Suspect labels")[1]
    assert "likely stripes_v 93.0%" in section and "given: checker" in section


def test_exported_models_reports_keep_thumbnails_without_overlays(tiny_run: Path, tiny_data: Path,
                                                                  tmp_path: Path) -> None:
    run = RunDir(tiny_run)
    source, evaluation = _all_wrong(tiny_data, run.read_classes())
    html = write_report(tmp_path, evaluation, tiny_run / "best.onnx", source, run).read_text()
    assert "class='cam'" not in html and "Suspect labels" not in html
