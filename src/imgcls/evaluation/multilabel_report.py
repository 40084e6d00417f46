"""The report of a multi-label model: per-class PR curves and the co-occurrence of errors (in place of the
confusion matrix), the threshold table, evaluation.json and a self-contained report.html.

``write_multilabel_run_report`` ends a multi-label training run: it chooses the per-class thresholds on
the val split, stores them in best.pt (``thresholds``, ``thresholds_from``) and writes the report.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.data.source import DataSource, data_for
from imgcls.evaluation import html as h
from imgcls.evaluation.multilabel import (THRESHOLD_SPLIT, MultiLabelEvaluation, choose_thresholds, model_targets,
                                          multilabel_evaluation, split_probabilities)
from imgcls.evaluation.plots import _save, plot_curves, plt
from imgcls.inference.predictor import Predictor
from imgcls.models.checkpoint import read_checkpoint_file
from imgcls.models.metadata import CHECKPOINT_FORMAT
from imgcls.rundir import RunDir, atomic_write_bytes, atomic_write_text, writable_folder, write_json

log = logging.getLogger(__name__)

PR_CURVES = "pr_curves.png"
ERRORS = "error_cooccurrence.png"
NONE = "(none)"


def error_cooccurrence(evaluation: MultiLabelEvaluation) -> np.ndarray:
    """(C+1, C+1) counts: row i, column j = images where label i was missed while label j was wrongly added;
    the last column counts misses with nothing added, the last row additions with nothing missed."""
    targets, preds = evaluation.targets.astype(bool), evaluation.preds.astype(bool)
    missed, added = targets & ~preds, preds & ~targets
    n = len(evaluation.classes)
    matrix = np.zeros((n + 1, n + 1), dtype=np.int64)
    for miss, add in zip(missed, added):
        rows, cols = np.flatnonzero(miss), np.flatnonzero(add)
        for i in rows:
            for j in (cols if len(cols) else [n]):
                matrix[i, j] += 1
        if not len(rows):
            for j in cols:
                matrix[n, j] += 1
    return matrix


def plot_pr_curves(evaluation: MultiLabelEvaluation, path: Path, title: str = "") -> Path:
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for c, name in enumerate(evaluation.classes):
        if not evaluation.targets[:, c].any():
            continue
        precision, recall, _ = precision_recall_curve(evaluation.targets[:, c], evaluation.probs[:, c])
        ap = evaluation.metrics["per_class"][name]["ap"]
        line, = ax.plot(recall, precision, label=f"{name} (AP {ap:.2f})")
        m = evaluation.metrics["per_class"][name]
        ax.plot([m["recall"]], [m["precision"]], "o", color=line.get_color())  # the stored threshold
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path, title)


def plot_errors(matrix: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    names = [*classes, NONE]
    size = min(14.0, max(4.0, 0.45 * len(names) + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    top = matrix.max() or 1
    image = ax.imshow(matrix, cmap="Reds", vmin=0, vmax=top)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("wrongly added")
    ax.set_ylabel("missed")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > 0.6 * top else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path, title)


def _body(evaluation: MultiLabelEvaluation, record: dict[str, Any], run: RunDir | None,
          summary: dict[str, Any], pictures: dict[str, Path | None]) -> str:
    m, n = evaluation.metrics, len(evaluation.targets)
    name = run.path.name if run else Path(record["model"]).name
    facts = [f"data {record['data']}", f"{record['split']} split, {n} images", "multi-label",
             f"model file {Path(record['model']).name}", datetime.now().strftime("%Y-%m-%d %H:%M")]
    cards = [("macro F1", h.fmt(m["macro_f1"], 3), "mean F1 over labels, at the stored thresholds"),
             ("mAP", h.fmt(m["mAP"], 3), "mean average precision, threshold-free"),
             ("micro F1", h.fmt(m["micro_f1"], 3), "F1 over every (image, label) decision"),
             (f"exact match ({evaluation.split})", h.percent(m["accuracy"]), "label set exactly right"),
             ("macro F1 at 0.5", h.fmt(m["macro_f1_at_0.5"], 3), "the same, every threshold 0.5")]
    if summary.get("wall_seconds") is not None:
        cards.append(("training time", h.duration(summary["wall_seconds"]), "wall clock"))
    rows = [[label, v["precision"], v["recall"], v["f1"], v["ap"], v["support"], v["threshold"]]
            for label, v in m["per_class"].items()]
    threshold_note = (f"Thresholds were chosen on the {m['thresholds_from']} split to maximise each label's F1"
                      + (", so the F1 figures here are optimistic; mAP and F1 at 0.5 do not depend on them."
                         if m.get("thresholds_from") == evaluation.split else "."))
    body = [f"<h1>imgcls report: {h.esc(name)}</h1><p class='sub'>{h.esc(' · '.join(facts))}</p>", h.cards(cards),
            h.heading("Per label", "라벨별 성능"),
            h.table(["label", "precision", "recall", "F1", "AP", "support", "threshold"], rows),
            h.note("A label is predicted when its score reaches its threshold. " + threshold_note
                   + " Support: images showing the label."),
            h.heading("Precision-recall curves", "정밀도-재현율 곡선"), h.png(pictures["pr"], "PR curves"),
            h.note("One curve per label as its threshold moves; the dot is the stored threshold."),
            h.heading("Errors that occur together", "함께 일어나는 오류"), h.png(pictures["errors"], "error co-occurrence"),
            h.note(f"Row: a label the model missed; column: a label it added wrongly on the same image "
                   f"({NONE}: nothing added, or nothing missed). Large cells are labels the model takes for each "
                   f"other.")]
    if pictures.get("curves") is not None:
        body += [h.heading("Learning curves", "학습 곡선"), h.png(pictures["curves"], "learning curves"),
                 h.note("val acc here is the exact-match ratio (label set exactly right at threshold 0.5).")]
    return h.page(f"imgcls report: {name}", "".join(body))


def write_multilabel_report(out: str | Path, evaluation: MultiLabelEvaluation, model: Path, source: DataSource,
                            run: RunDir | None = None) -> Path:
    """Pictures, evaluation.json and report.html of a multi-label evaluation; returns report.html's path."""
    out = writable_folder(Path(out))
    title = f"{run.path.name if run else model.name} ({evaluation.split})"
    summary = run.read_metrics() if run else {}
    pictures = {"pr": plot_pr_curves(evaluation, out / PR_CURVES, title),
                "errors": plot_errors(error_cooccurrence(evaluation), evaluation.classes, out / ERRORS, title),
                "curves": plot_curves(summary.get("epochs", []), out / RunDir.CURVES, title) if run else None}
    record = {"model": str(model), "data": source.spec, "split": evaluation.split, "tta": evaluation.tta,
              "images": int(len(evaluation.targets)),
              "split_sizes": {split: len(source.labels(split)) for split in source.splits},
              "metrics": evaluation.metrics}
    write_json(out / RunDir.EVALUATION, record)
    report = out / RunDir.REPORT
    atomic_write_text(report, _body(evaluation, record, run, summary, pictures))
    return report


def store_thresholds(checkpoint: Path, thresholds: np.ndarray, split: str) -> None:
    """Write the per-class thresholds into a checkpoint's imgcls metadata (atomically)."""
    data = read_checkpoint_file(checkpoint)
    data[CHECKPOINT_FORMAT] = {**data[CHECKPOINT_FORMAT], "thresholds": [round(float(t), 6) for t in thresholds],
                    "thresholds_from": split}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    atomic_write_bytes(checkpoint, buffer.getvalue())


def write_multilabel_run_report(run: RunDir, source: DataSource | None = None,
                                probabilities: np.ndarray | None = None) -> MultiLabelEvaluation:
    """Choose best.pt's thresholds on val, store them, and write the run's report (as ``write_run_report``)."""
    source = source or data_for(run.path, None)
    classes = run.read_classes()
    if probabilities is None or len(probabilities) != len(source.labels(THRESHOLD_SPLIT)):
        probabilities = split_probabilities(Predictor.load(run.best_checkpoint), source, THRESHOLD_SPLIT)
    thresholds = choose_thresholds(model_targets(source, THRESHOLD_SPLIT, classes), probabilities)
    store_thresholds(run.best_checkpoint, thresholds, THRESHOLD_SPLIT)
    log.info("thresholds (chosen on %s for the best F1 per label): %s", THRESHOLD_SPLIT,
             ", ".join(f"{c} {t:.2f}" for c, t in zip(classes, thresholds)))
    evaluation = multilabel_evaluation(classes, thresholds, source, THRESHOLD_SPLIT, probabilities, THRESHOLD_SPLIT)
    report = write_multilabel_report(run.path, evaluation, run.best_checkpoint, source, run)
    log.info("report: %s", report)
    return evaluation
