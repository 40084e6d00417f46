"""``imgcls compare``: runs side by side, read from their run directories alone.

Writes ``table.md`` and ``table.csv`` (model, strategy, the settings that differ between the runs,
best val accuracy, macro F1, epochs, wall time, images/s), ``val_accuracy.png`` (every run's val
accuracy curve on shared axes) and a ``report.html`` of both -- the seeds' fine-tuning vs feature
extraction and augmentation-ablation tables in one command.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgcls.data.source import data_for
from imgcls.errors import ImgclsError, RunDirError
from imgcls.evaluation import html as h
from imgcls.evaluation.evaluate import evaluate_predictor
from imgcls.evaluation.plots import plot_val_accuracy
from imgcls.inference.predictor import Predictor
from imgcls.rundir import RunDir, atomic_write_text, read_json, writable_folder

log = logging.getLogger(__name__)

TABLE_MD, TABLE_CSV, PLOT = "table.md", "table.csv", "val_accuracy.png"
# Settings that name or place a run, or have a column of their own.
NOT_SETTINGS = {"name", "out", "model", "strategy", "epochs"}
FOOTNOTES = [
    "best val acc: the highest val accuracy of any epoch (metrics.json); the best is in bold (green in report.html).",
    "macro F1: F1 averaged over classes, of the best checkpoint on the val split (evaluation.json).",
    "epochs: epochs run ('7 of 10' when early stopping ended the run sooner).",
    "wall time: the run's training wall clock, validation and resumed sessions included.",
    "images/s: training images x epochs / wall time -- training throughput of the whole run.",
]


@dataclass
class RunSummary:
    run: str  # label in the table: the run folder's name (with its parent when names repeat)
    path: str
    model: str | None
    strategy: str | None
    best_val_acc: float | None
    best_epoch: int | None
    macro_f1: float | None
    epochs: int
    wall_seconds: float | None
    train_images: int | None
    images_per_second: float | None
    settings: dict[str, Any] = field(default_factory=dict)  # config.yaml
    curve: list[dict[str, Any]] = field(default_factory=list)  # metrics.json's epochs

    def to_dict(self) -> dict[str, Any]:
        """The table row (config.yaml and the curve left out)."""
        return {k: v for k, v in asdict(self).items() if k not in ("settings", "curve")}


def find_runs(paths: list[str | Path], skip: Path | None = None) -> list[RunDir]:
    """Run directories named, or inside a named folder (``imgcls compare runs``); ``skip`` is --out."""
    runs: list[RunDir] = []
    for path in map(Path, paths):
        if RunDir.is_run_dir(path):
            runs.append(RunDir(path))
            continue
        if skip is not None and path.resolve() == skip.resolve():
            continue  # `imgcls compare runs/* --out runs/compare` run a second time
        inner = sorted(p for p in path.iterdir() if RunDir.is_run_dir(p)) if path.is_dir() else []
        if not inner:
            raise RunDirError(f"{path} is not an imgcls run directory (it needs config.yaml and best.pt or last.pt) "
                              f"and holds none; give the folders `imgcls train` printed")
        runs.extend(RunDir(p) for p in inner)
    if not runs:
        raise RunDirError("no runs to compare; give run directories, e.g. imgcls compare runs/a runs/b --out cmp")
    return runs


def _val_record(run: RunDir) -> dict[str, Any] | None:
    """The run's evaluation.json (written at the end of training), or a fresh evaluation of best.pt on val."""
    path = run.file(RunDir.EVALUATION)
    if path.is_file():
        return read_json(path)
    log.info("%s has no %s; evaluating its best checkpoint on val", run.path, RunDir.EVALUATION)
    try:
        source = data_for(run.path, None)
        evaluation = evaluate_predictor(Predictor.load(run.best_checkpoint), source, "val")
    except ImgclsError as exc:
        log.warning("no macro F1 for %s: %s", run.path, exc)
        return None
    return {"metrics": evaluation.metrics, "split_sizes": {s: len(source.labels(s)) for s in source.splits}}


def summarize_run(run: RunDir, label: str) -> RunSummary:
    config, metrics = run.read_config(), run.read_metrics()
    record = _val_record(run) or {}
    epochs = metrics.get("epochs") or []
    wall = metrics.get("wall_seconds")
    train_images = (record.get("split_sizes") or {}).get("train")
    speed = train_images * len(epochs) / wall if train_images and epochs and wall else None
    return RunSummary(run=label, path=str(run.path), model=config.get("model"), strategy=config.get("strategy"),
                      best_val_acc=metrics.get("best_val_acc"), best_epoch=metrics.get("best_epoch"),
                      macro_f1=(record.get("metrics") or {}).get("macro_f1"), epochs=len(epochs), wall_seconds=wall,
                      train_images=train_images, images_per_second=speed, settings=config, curve=epochs)


def _labels(runs: list[RunDir]) -> list[str]:
    names = [r.path.name for r in runs]
    return [f"{r.path.parent.name}/{r.path.name}" if names.count(r.path.name) > 1 else r.path.name for r in runs]


def differing_settings(summaries: list[RunSummary]) -> list[str]:
    """Settings whose values are not the same in every run, in config.yaml order."""
    keys: list[str] = []
    for s in summaries:
        keys += [k for k in s.settings if k not in keys and k not in NOT_SETTINGS]
    return [k for k in keys if len({repr(s.settings.get(k)) for s in summaries}) > 1]


def _best(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if len(present) > 1 else None


def _epochs(summary: RunSummary) -> str:
    """'3', or '7 of 10' when early stopping (or an interrupt) ended the run before its planned epochs."""
    planned = summary.settings.get("epochs")
    return f"{summary.epochs} of {planned}" if planned and planned != summary.epochs else str(summary.epochs)


def table_rows(summaries: list[RunSummary], settings: list[str]) -> tuple[list[str], list[list[str]], list[set[int]]]:
    """Header, formatted rows, and per row the columns holding the best value (best val acc, macro F1)."""
    header = ["run", "model", "strategy", *settings, "best val acc", "macro F1", "epochs", "wall time", "images/s"]
    best_acc, best_f1 = _best([s.best_val_acc for s in summaries]), _best([s.macro_f1 for s in summaries])
    acc_column = 3 + len(settings)
    rows, best = [], []
    for s in summaries:
        at_epoch = f" (epoch {s.best_epoch})" if s.best_epoch else ""
        rows.append([s.run, s.model or "–", s.strategy or "–", *(str(s.settings.get(k, "–")) for k in settings),
                     h.percent(s.best_val_acc) + at_epoch, h.fmt(s.macro_f1, 3), _epochs(s),
                     h.duration(s.wall_seconds), h.rate(s.images_per_second)])
        best.append({column for column, value, top in ((acc_column, s.best_val_acc, best_acc),
                                                       (acc_column + 1, s.macro_f1, best_f1))
                     if top is not None and value == top})
    return header, rows, best


def markdown_table(summaries: list[RunSummary], settings: list[str]) -> str:
    header, rows, best = table_rows(summaries, settings)
    align = [":---"] * (len(header) - 5) + ["---:"] * 5
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for row, marked in zip(rows, best):
        cells = [f"**{c}**" if i in marked else c for i, c in enumerate(row)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def html_report(summaries: list[RunSummary], settings: list[str], plot: Path) -> str:
    header, rows, best = table_rows(summaries, settings)
    marks = ["best" if marked else "" for marked in best]
    body = (f"<h1>imgcls compare: {len(summaries)} runs</h1>" + h.table(header, rows, marks)
            + "".join(h.note(n) for n in FOOTNOTES) + h.heading("Validation accuracy", "검증 정확도")
            + h.png(plot, "val accuracy of every run"))
    return h.page("imgcls compare", body)


def csv_table(summaries: list[RunSummary], settings: list[str]) -> str:
    fields = ["run", "path", "model", "strategy", *settings, "best_val_acc", "best_epoch", "macro_f1", "epochs",
              "wall_seconds", "train_images", "images_per_second"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for s in summaries:
        row = {k: v for k, v in asdict(s).items() if k in fields}
        writer.writerow({**row, **{k: s.settings.get(k) for k in settings}})
    return buffer.getvalue()


def compare_runs(paths: list[str | Path], out: str | Path) -> list[RunSummary]:
    """Write table.md, table.csv, val_accuracy.png and report.html for the runs in ``out``; returns the rows."""
    out = Path(out)
    runs = find_runs(paths, skip=out)
    summaries = [summarize_run(run, label) for run, label in zip(runs, _labels(runs))]
    settings = differing_settings(summaries)
    writable_folder(out, "the comparison")
    notes = "\n".join(f"- {n}" for n in FOOTNOTES)
    atomic_write_text(out / TABLE_MD, f"# imgcls compare\n\n{markdown_table(summaries, settings)}\n{notes}\n\n"
                                      f"![val accuracy of every run]({PLOT})\n")
    atomic_write_text(out / TABLE_CSV, csv_table(summaries, settings))
    plot = plot_val_accuracy([(s.run, s.curve) for s in summaries], out / PLOT, f"{len(summaries)} runs compared")
    atomic_write_text(out / RunDir.REPORT, html_report(summaries, settings, plot))
    log.info("compare: %s, %s, %s and %s in %s", TABLE_MD, TABLE_CSV, PLOT, RunDir.REPORT, out)
    return summaries
