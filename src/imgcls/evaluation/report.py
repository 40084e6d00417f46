"""A run's pictures and its self-contained report.html."""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import Any

from imgcls.evaluation.evaluate import Evaluation, data_for, evaluate_predictor
from imgcls.evaluation.plots import plot_confusion, plot_curves
from imgcls.inference.predictor import Predictor
from imgcls.rundir import RunDir

log = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,-apple-system,"Noto Sans KR","Malgun Gothic",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{margin-bottom:.2em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.headline{display:flex;gap:2em;margin:1em 0}.headline div{background:#f4f7fb;padding:.8em 1.2em;border-radius:8px}
.headline b{display:block;font-size:1.6em}img{max-width:100%}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_report(run: RunDir, evaluation: Evaluation, pictures: list[Path]) -> str:
    config, summary, m = run.read_config(), run.read_metrics(), evaluation.metrics
    name = html.escape(run.path.name)
    headline = "".join(f"<div>{label}<b>{value}</b></div>" for label, value in (
        ("best val accuracy", _fmt(summary.get("best_val_acc"))), ("macro F1", _fmt(m["macro_f1"])),
        ("best epoch", summary.get("best_epoch")), ("training time", f"{summary.get('wall_seconds') or 0:.0f} s")))
    per_class = _table(["class", "precision", "recall", "F1", "support"],
                       [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in m["per_class"].items()])
    settings = _table(["setting", "value"], [[k, v] for k, v in config.items()])
    epochs = _table(["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"],
                    [[r["epoch"], r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"], r["lr"], r["seconds"]]
                     for r in summary.get("epochs", [])])
    images = "".join(f"<h2>{html.escape(p.stem.replace('_', ' '))}</h2>{_img(p)}" for p in pictures if p.is_file())
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>imgcls run {name}</title>"
            f"<style>{STYLE}</style></head><body><h1>imgcls run {name}</h1>"
            f"<p>{html.escape(str(config.get('model')))}, {html.escape(str(config.get('strategy')))}, "
            f"evaluated on the {evaluation.split} split ({len(evaluation.labels)} images) with the best checkpoint.</p>"
            f"<div class='headline'>{headline}</div><h2>Per class</h2>{per_class}{images}"
            f"<h2>Epochs</h2>{epochs}<h2>Settings</h2>{settings}</body></html>")


def write_run_report(run: RunDir, split: str = "val") -> Evaluation:
    """Evaluate the run's best checkpoint on ``split``; write curves.png, confusion_matrix.png, report.html."""
    predictor = Predictor.load(run.best_checkpoint)
    evaluation = evaluate_predictor(predictor, data_for(run.path, None), split)
    curves = plot_curves(run.read_metrics().get("epochs", []), run.file(RunDir.CURVES), run.path.name)
    confusion = plot_confusion(evaluation.metrics["confusion_matrix"], evaluation.classes,
                               run.file(RunDir.CONFUSION), f"{run.path.name} ({split})")
    run.file(RunDir.REPORT).write_text(render_report(run, evaluation, [curves, confusion]), encoding="utf-8")
    log.info("report: %s", run.file(RunDir.REPORT))
    return evaluation
