"""A run's (or an evaluation's) pictures, its evaluation.json and its self-contained report.html.

``write_run_report`` runs at the end of training, into the run directory; ``write_report`` is what
``imgcls evaluate`` calls for any split, into ``RUN/eval-SPLIT/`` or ``--out``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from imgcls.data.source import DataSource, data_for
from imgcls.evaluation import html as h
from imgcls.evaluation.evaluate import Evaluation, evaluate_predictor, evaluation_from_probabilities
from imgcls.evaluation.ood import OodEvaluation
from imgcls.evaluation.gallery import sample_predictions, shown_images, worst_mistakes
from imgcls.evaluation.insight import add_overlays, suspects_section
from imgcls.evaluation.multilabel_report import write_multilabel_report
from imgcls.evaluation.plots import plot_confusion, plot_curves, plot_reliability
from imgcls.inference.predictor import Predictor
from imgcls.leaderboard import read_leaderboard
from imgcls.models.checkpoint import load_checkpoint
from imgcls.rundir import RunDir, atomic_write_text, writable_folder, write_json

log = logging.getLogger(__name__)

MISTAKES_SHOWN = 24
SAMPLES_SHOWN = 24


def calibration_record(evaluation: Evaluation) -> dict[str, Any]:
    """``{"ece", "ece_before", "temperature", "fitted_on", "bins", "bins_before"}``; ECE before equals ECE
    and temperature is 1 for a model without calibration."""
    after, before = evaluation.calibration, evaluation.calibration_before
    info = evaluation.calibration_info or {}
    record = after.to_dict()
    record.update({"ece_before": (before or after).ece, "temperature": evaluation.temperature,
                   "fitted_on": info.get("fitted_on"), "ece_cross_fitted": info.get("ece"),
                   "bins_before": (before or after).to_dict()["bins"]})
    return record


def evaluation_record(evaluation: Evaluation, model: Path, source: DataSource,
                      ood: OodEvaluation | None = None) -> dict[str, Any]:
    """evaluation.json: what was evaluated on what, the `evaluate --json` metrics, calibration and, with
    ``evaluate --ood``, how the unknown answer did."""
    record = {"model": str(model), "data": source.spec, "split": evaluation.split, "tta": evaluation.tta,
              "images": int(len(evaluation.labels)),
              "split_sizes": {split: len(source.labels(split)) for split in source.splits},
              "metrics": evaluation.metrics, "calibration": calibration_record(evaluation)}
    if ood is not None:
        record["ood"] = ood.to_dict()
    return record


def _confusions(evaluation: Evaluation) -> list[tuple[int, str, int]]:
    """Per class: (errors, most frequent wrong prediction, how often)."""
    matrix = np.asarray(evaluation.metrics["confusion_matrix"])
    result = []
    for i in range(len(matrix)):
        off = matrix[i].copy()
        off[i] = 0
        j = int(off.argmax())
        result.append((int(off.sum()), evaluation.classes[j] if off[j] else "", int(off[j])))
    return result


def _summary(evaluation: Evaluation) -> str:
    """Two plain sentences on what the numbers mean for this model."""
    m, n = evaluation.metrics, len(evaluation.labels)
    correct = int(np.trace(np.asarray(m["confusion_matrix"])))
    text = f"The model names {correct} of {n} {evaluation.split} images correctly ({h.percent(m['accuracy'])})."
    confusions = _confusions(evaluation)
    recalls = [(v["recall"], name) for name, v in m["per_class"].items() if v["support"]]
    if recalls and correct < n:
        recall, name = min(recalls)
        index = evaluation.classes.index(name)
        errors, other, times = confusions[index]
        support = m["per_class"][name]["support"]
        text += (f" Weakest class: {name} (recall {h.percent(recall)}): {errors} of its {support} images were "
                 f"named wrongly, most often as {other} ({times}).")
    return f"<p class='summary'>{h.esc(text)}</p>"


def _headline(evaluation: Evaluation, summary: dict[str, Any]) -> str:
    m, n = evaluation.metrics, len(evaluation.labels)
    items = [(f"accuracy ({evaluation.split})", h.percent(m["accuracy"]), f"of {n} images"),
             ("macro F1", h.fmt(m["macro_f1"], 3), "mean F1 over classes")]
    if "top5" in m:
        items.append(("top-5 accuracy", h.percent(m["top5"]), "true class among the 5 likeliest"))
    before = evaluation.calibration_before
    items.append(("calibration error", h.fmt(evaluation.calibration.ece, 3),
                  f"ECE, 0 is perfect; {h.fmt(before.ece, 3)} before calibration" if before else "ECE, 0 is perfect"))
    epochs = summary.get("epochs") or []
    if summary.get("best_val_acc") is not None:
        items.append(("best val accuracy", h.percent(summary["best_val_acc"]),
                      f"epoch {summary['best_epoch']} of {len(epochs)}"))
    if summary.get("wall_seconds") is not None:
        items.append(("training time", h.duration(summary["wall_seconds"]), "wall clock"))
    return h.cards(items)


def _per_class(evaluation: Evaluation) -> str:
    confusions, rows, weak = _confusions(evaluation), [], []
    for (name, v), (errors, other, times) in zip(evaluation.metrics["per_class"].items(), confusions):
        rows.append([name, v["precision"], v["recall"], v["f1"], v["support"], f"{other} ({times})" if other else ""])
        weak.append("weak" if v["support"] and v["recall"] < evaluation.metrics["accuracy"] else "")
    if len(rows) > 1:
        order = sorted(range(len(rows)), key=lambda i: (rows[i][4] == 0, rows[i][2], rows[i][3]))  # weakest first
        rows, weak = [rows[i] for i in order], [weak[i] for i in order]
    return (h.table(["class", "precision", "recall", "F1", "support", "most often taken for"], rows, weak)
            + h.note("Precision: of the images predicted as the class, the share that are. Recall: of the class's "
                     "images, the share found. F1: their harmonic mean. Support: images of the class. Classes are "
                     "listed by recall, weakest first; shaded rows have recall below the overall accuracy."))


def _gallery_sections(evaluation: Evaluation, model: Path) -> str:
    mistakes = worst_mistakes(evaluation, MISTAKES_SHOWN)
    wrong = int((evaluation.preds != evaluation.labels).sum())
    parts = [h.heading("Worst mistakes", "가장 크게 틀린 예측")]
    if mistakes:
        shown = shown_images(evaluation, mistakes)
        add_overlays(evaluation, model, shown)
        parts.append(h.note(f"{len(mistakes)} of the {wrong} wrong predictions, the most confidently wrong first "
                            f"(highest loss). Bold: predicted class and its probability; below: the true class and "
                            f"the probability the model gave it."
                            + (" Under each photo: where the model looked for the class it predicted (Grad-CAM; "
                               "red is where the evidence was)." if any(s.overlay for s in shown) else "")))
        parts.append(h.gallery(shown))
    else:
        parts.append(h.note(f"No mistakes: every {evaluation.split} image was named correctly."))
    parts.append(h.heading("Sample predictions", "예측 예시"))
    parts.append(h.note("A fixed random sample of every class. Green frame: right, red: wrong."))
    parts.append(h.gallery(shown_images(evaluation, sample_predictions(evaluation, SAMPLES_SHOWN))))
    return "".join(parts)


def _calibration_section(evaluation: Evaluation, picture: Path) -> str:
    ece, before, info = evaluation.calibration.ece, evaluation.calibration_before, evaluation.calibration_info
    text = (f"Expected calibration error {ece:.3f}: on average the model's confidence differs from its "
            f"actual accuracy by {100 * ece:.1f} percentage points. Bars on the dashed diagonal mean "
            f"'90% sure' comes true 90% of the time; bars below it mean the model is overconfident.")
    if before is not None and info:
        text += (f" Before temperature scaling (T = {evaluation.temperature:.3f}, fitted on "
                 f"{info.get('fitted_on')}) the error was {before.ece:.3f} (left).")
        if evaluation.split == "val" and info.get("ece") is not None:
            text += (f" The temperature was fitted on this split, so the honest figure after calibration is the "
                     f"cross-fitted one recorded at training: {info['ece']:.3f}.")
    else:
        text += " The model carries no temperature (trained with --no-calibrate, or by an older imgcls)."
    return h.heading("Calibration", "신뢰도 보정") + h.png(picture, "reliability diagram") + h.note(text)


def _ood_section(ood: OodEvaluation | None) -> str:
    if ood is None:
        return ""
    rows = [["all", ood.images, h.percent(ood.rejected)]] + [[name, part["images"], h.percent(part["rejected"])]
                                                               for name, part in ood.per_folder.items()]
    return (h.heading("Unknown answers", "모르는 사진 거르기")
            + h.cards([("rejected (out-of-class)", h.percent(ood.rejected), f"of {ood.images} pictures in --ood"),
                       ("accepted (known)", h.percent(ood.accepted_known), f"of {ood.known_images} known images"),
                       ("AUROC", h.fmt(ood.auroc, 3), "of the OOD score, 1 is perfect")])
            + h.table(["pictures of none of the classes", "images", "answered unknown"], rows)
            + h.note(f"Score: {ood.method}; an image is unknown when its score is above {ood.threshold:.4f}, the "
                     f"threshold that accepts the chosen share of the run's val images (--reject-rate). "
                     f"Folder: {ood.folder}."))


def _training_sections(summary: dict[str, Any], config: dict[str, Any] | None) -> str:
    """The epochs table and, for a run (``config`` not None), its settings."""
    parts = []
    rows = [[r.get("epoch"), r.get("train_loss"), r.get("train_acc"), r.get("val_loss"), r.get("val_acc"),
             r.get("lr"), h.fmt(r.get("seconds"), 1)] for r in summary.get("epochs", [])]
    if rows:
        parts += [h.heading("Epochs", "에포크별 기록"),
                  h.table(["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"], rows)]
    if config is not None:
        parts += [h.heading("Settings", "설정"), "<details><summary>every setting of the run (config.yaml)</summary>",
                  h.table(["setting", "value"], [[k, v] for k, v in config.items()]), "</details>"]
    return "".join(parts)


def _leaderboard_section(run: RunDir | None) -> str:
    """The recipes --auto tried (leaderboard.csv), best first, the chosen one marked."""
    rows = read_leaderboard(run.path) if run else None
    if not rows:
        return ""
    table = h.table(["rank", "recipe", "held-out accuracy", "held out", "seconds"],
                    [[r["rank"], r["recipe"] + (" (chosen)" if r["chosen"] else ""), r["heldout_accuracy"],
                      r["heldout"], r["seconds"]] for r in rows],
                    ["best" if r["chosen"] else "" for r in rows])
    return (h.heading("Recipes tried (--auto)", "자동 레시피 탐색") + table
            + h.note("Held-out accuracy is measured on images carved from train, never on the val split above; "
                     "the chosen recipe is the one this run trained. --no-auto, --strategy or --model skip the "
                     "search."))


def render_report(evaluation: Evaluation, record: dict[str, Any], pictures: dict[str, Path | None],
                  run: RunDir | None, summary: dict[str, Any], suspects: list[dict[str, Any]] | None = None,
                  ood: OodEvaluation | None = None) -> str:
    """report.html; ``summary`` is the run's metrics.json ({} without a run); ``suspects``: training images
    whose label is probably wrong (None: not looked for); ``ood``: the ``evaluate --ood`` figures."""
    config = run.read_config() if run else None
    name = run.path.name if run else Path(record["model"]).name
    described = [config.get("model"), config.get("strategy")] if config is not None else []
    facts = [*(str(x) for x in described if x), f"data {record['data']}",
             f"{record['split']} split, {record['images']} images", f"model file {Path(record['model']).name}"]
    if evaluation.tta:
        facts.append("test-time augmentation: each image averaged with its mirror image")
    facts.append(datetime.now().strftime("%Y-%m-%d %H:%M"))
    body = [f"<h1>imgcls report: {h.esc(name)}</h1><p class='sub'>{h.esc(' · '.join(facts))}</p>",
            _headline(evaluation, summary), _summary(evaluation),
            h.heading("Per class", "클래스별 성능"), _per_class(evaluation)]
    if pictures.get("curves") is not None:
        body += [h.heading("Learning curves", "학습 곡선"), h.png(pictures["curves"], "learning curves"),
                 h.note("Train and val per epoch. Train accuracy rising while val accuracy stalls, or val loss "
                        "climbing, means overfitting; both low means underfitting or too few epochs.")]
    body += [h.heading("Confusion matrix", "혼동 행렬"), h.png(pictures["confusion"], "confusion matrix"),
             h.note("Rows are the true classes, columns the predicted ones; the diagonal holds the right answers. "
                    "Right: each row divided by its total, so small classes read as clearly as large ones."),
             _gallery_sections(evaluation, Path(record["model"])), suspects_section(suspects),
             _calibration_section(evaluation, pictures["reliability"]), _ood_section(ood),
             _leaderboard_section(run), _training_sections(summary, config)]
    return h.page(f"imgcls report: {name}", "".join(body))


def write_report(out: str | Path, evaluation: Evaluation, model: Path, source: DataSource,
                 run: RunDir | None = None, suspects: list[dict[str, Any]] | None = None,
                 ood: OodEvaluation | None = None) -> Path:
    """Pictures, evaluation.json and report.html for ``evaluation`` in ``out`` (with the ``evaluate --ood``
    figures when given); returns report.html's path."""
    if getattr(evaluation, "task", "single") == "multilabel":
        return write_multilabel_report(out, evaluation, model, source, run)
    out = writable_folder(Path(out))
    name = run.path.name if run else model.name
    title = f"{name} ({evaluation.split})"
    summary = run.read_metrics() if run else {}
    pictures: dict[str, Path | None] = {
        "curves": plot_curves(summary.get("epochs", []), out / RunDir.CURVES, name) if run else None,
        "confusion": plot_confusion(evaluation.metrics["confusion_matrix"], evaluation.classes,
                                    out / RunDir.CONFUSION, title),
        "reliability": plot_reliability(evaluation.calibration, out / RunDir.RELIABILITY, title,
                                        before=evaluation.calibration_before),
    }
    record = evaluation_record(evaluation, model, source, ood)
    write_json(out / RunDir.EVALUATION, record)
    report = out / RunDir.REPORT
    atomic_write_text(report, render_report(evaluation, record, pictures, run, summary, suspects, ood))
    return report


def write_run_report(run: RunDir, split: str = "val", source: DataSource | None = None,
                     probabilities: np.ndarray | None = None,
                     suspects: list[dict[str, Any]] | None = None) -> Evaluation:
    """Evaluate the run's best checkpoint on ``split``; write its pictures, evaluation.json and report.html.

    Training passes its ``source`` and, when it already has them (the best head on cached val
    embeddings), the best checkpoint's ``probabilities`` on ``split``: no second pass over the images."""
    source = source or data_for(run.path, None)
    if probabilities is not None and len(probabilities) == len(source.labels(split)):
        evaluation = evaluation_from_probabilities(probabilities, run.read_classes(), source, split)
        evaluation.calibration_info = load_checkpoint(run.best_checkpoint).info.get("calibration")
    else:
        evaluation = evaluate_predictor(Predictor.load(run.best_checkpoint), source, split)
    report = write_report(run.path, evaluation, run.best_checkpoint, source, run, suspects)
    log.info("report: %s", report)
    return evaluation
