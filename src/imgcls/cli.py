"""The ``imgcls`` command: parse, call the Python API, print, map errors to exit codes.

User mistakes (:class:`ImgclsError`) print one line and exit 2; anything else is a bug (exit 1
with a traceback). ``--json`` output goes to stdout alone; logs and progress go to stderr.
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any, Optional

import typer

from imgcls.cli_options import option_help, with_train_options
from imgcls.errors import ImgclsError, model_not_found, storage_error
from imgcls.runtime import tune_process

app = typer.Typer(
    name="imgcls",
    help="Train, evaluate, export and serve image classifiers from folders of photos.",
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

VERBOSE_HELP = "Also log details: each file ignored as not an image, each step."
TRAIN_FLAGS = "Training settings (defaults in parentheses are decided from the data and model when empty)"


def _existing(path: Path) -> Path:
    """A MODEL argument that does not exist is named at once, before torch and the rest load (seconds)."""
    if not path.expanduser().exists():
        raise model_not_found(path)
    return path


def _setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("imgcls")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _echo_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _progress(desc: str):  # noqa: ANN202 - returns a callback
    from imgcls.progress import Progress

    return Progress(desc)


# train ------------------------------------------------------------------------------------------
@app.command()
@with_train_options(panel=TRAIN_FLAGS)
def train(
    data: Optional[str] = typer.Argument(None, help=option_help("data", default=False)),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run from its last.pt."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of settings (keys as flags; flags win)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
    **settings: Any,
) -> None:
    """Train a classifier on DATA; writes a run directory and prints its path last."""
    from imgcls.api import Classifier

    _setup_logging(verbose)
    if resume is not None:
        classifier = Classifier.resume(resume)
    else:
        classifier = Classifier.train(data, config=config, **settings)
    from imgcls.training.distributed import is_rank_zero

    if not is_rank_zero():  # the other processes of a distributed run: rank 0 reports
        return
    summary = classifier.run.read_metrics()
    by = summary.get("best_epoch_by")  # multi-label: the best epoch is the one of the highest val mAP
    row = next((r for r in summary["epochs"] if r["epoch"] == summary["best_epoch"]), {})
    best = f"best {by} {row.get(by, float('nan')):.4f} (val_acc, exact match, {summary['best_val_acc']:.4f})" \
        if by else f"best val_acc {summary['best_val_acc']:.4f}"
    typer.echo(f"{best} at epoch {summary['best_epoch']} of {len(summary['epochs'])}, "
               f"{summary['wall_seconds']:.0f} s", err=True)
    typer.echo(str(classifier.path))


# lr-find ----------------------------------------------------------------------------------------
@app.command("lr-find")
@with_train_options(exclude=("out",), panel=TRAIN_FLAGS)
def lr_find_command(
    data: Optional[str] = typer.Argument(None, help=option_help("data", default=False)),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of settings (keys as flags; flags win)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for lr_find.png and lr_find.json."),
    steps: int = typer.Option(50, min=10, help="Batches of the range test."),
    as_json: bool = typer.Option(False, "--json", help="Print the suggestion as JSON on stdout."),
    **settings: Any,
) -> None:
    """Suggest a learning rate (Lightning's range test) for DATA with the train options; writes lr_find.png."""
    from imgcls.api import find_lr

    _setup_logging()
    finding = find_lr(data, out=out, steps=steps, config=config, **settings)
    if as_json:
        _echo_json({k: v for k, v in finding.items() if k not in ("lrs", "losses")})
        return
    typer.echo(f"plot: {finding['plot']}", err=True)
    typer.echo(f"suggested learning rate: {finding['suggestion']:.3g} (train with --lr {finding['suggestion']:.3g})")


# evaluate ---------------------------------------------------------------------------------------
def _columns(text: str) -> int:
    """Terminal columns of ``text``: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _padded(text: str, width: int) -> str:
    return text + " " * max(0, width - _columns(text))


def _report_text(metrics: dict[str, Any]) -> str:
    width = max(12, *(_columns(name) for name in metrics["per_class"]))
    lines = [f"{'':{width}}  precision  recall  f1-score  support"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{_padded(name, width)}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:8.4f}  "
                     f"{m['support']:7d}")
    total = sum(m["support"] for m in metrics["per_class"].values())
    lines.append("")
    lines.append(f"{'accuracy':{width}}  {'':9}  {'':6}  {metrics['accuracy']:8.4f}  {total:7d}")
    lines.append(f"{'macro F1':{width}}  {'':9}  {'':6}  {metrics['macro_f1']:8.4f}  {total:7d}")
    if "top5" in metrics:
        lines.append(f"{'top-5 acc':{width}}  {'':9}  {'':6}  {metrics['top5']:8.4f}  {total:7d}")
    if "ood" in metrics:
        ood = metrics["ood"]
        lines.append(f"\nunknown answers ({ood['method']}): {ood['rejected']:.1%} of {ood['images']} pictures in "
                     f"{ood['folder']} rejected, {ood['accepted_known']:.1%} of {ood['known_images']} known images "
                     f"accepted, AUROC {ood['auroc']:.3f}")
        lines.extend(f"  {name}: {part['rejected']:.1%} of {part['images']} rejected"
                     for name, part in ood["per_folder"].items())
    return "\n".join(lines)


def _multilabel_text(metrics: dict[str, Any]) -> str:
    width = max(12, *(_columns(name) for name in metrics["per_class"]))
    lines = [f"{'':{width}}  precision  recall  f1-score      AP  threshold  support"]
    for name, m in metrics["per_class"].items():
        ap = "-" if m["ap"] is None else f"{m['ap']:.4f}"
        lines.append(f"{_padded(name, width)}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:8.4f}  {ap:>6}  "
                     f"{m['threshold']:9.3f}  {m['support']:7d}")
    lines.append("")
    for key, label in (("macro_f1", "macro F1"), ("micro_f1", "micro F1"), ("mAP", "mAP"),
                       ("macro_f1_at_0.5", "macro F1 @0.5"), ("accuracy", "exact match")):
        lines.append(f"{label:{width}}  {metrics[key]:.4f}")
    if metrics.get("note"):
        lines.append(f"\nnote: {metrics['note']}")
    return "\n".join(lines)


REJECT_RATE_HELP = ("Share of known images (the run's val photos) answered 'unknown'; sets the threshold of the "
                    "out-of-distribution score.")
NO_REJECT_HELP = "Never answer 'unknown' (the closest class always)."


def _reject_rate(reject_rate: float, no_reject: bool) -> float | None:
    return None if no_reject else reject_rate


@app.command()
def evaluate(
    model: Path = typer.Argument(..., callback=_existing,
                                 help="Run directory, .pt checkpoint, .onnx, .ts or OpenVINO .xml file."),
    data: Optional[str] = typer.Option(None, help="Data folder (default: the run's own data and split)."),
    split: str = typer.Option("val", help="val | test"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average each image with its mirror."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for report.html and pictures "
                                                           "(default RUN/eval-SPLIT, or beside a model file)."),
    ood: Optional[Path] = typer.Option(None, "--ood", help="Folder of pictures of none of the classes: report "
                                                           "how many the model answers 'unknown' (and AUROC)."),
    reject_rate: float = typer.Option(0.05, "--reject-rate", min=0.0, max=0.99, help=REJECT_RATE_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Accuracy, macro F1, per-class report and confusion matrix of a model on a split; writes report.html."""
    from imgcls.api import Classifier
    from imgcls.evaluation.evaluate import default_report_dir

    _setup_logging(verbose)
    if split not in ("val", "test"):
        raise ImgclsError(f"--split must be val or test, not {split!r}")
    out = out or default_report_dir(model, split, data, tta)
    metrics = Classifier.load(model, reject_rate=reject_rate).evaluate(data, split=split, tta=tta, out=out, ood=ood,
                                                                       progress=_progress("evaluate"))
    if as_json:
        _echo_json(metrics)
        typer.echo(f"report: {out / 'report.html'}", err=True)
        return
    if metrics.get("task") == "multilabel":
        typer.echo(_multilabel_text(metrics))
        typer.echo(f"\nreport: {out / 'report.html'}")
        return
    typer.echo(_report_text(metrics))
    typer.echo("\nconfusion matrix (rows: true, columns: predicted)")
    for name, row in zip(metrics["per_class"], metrics["confusion_matrix"]):
        typer.echo(f"  {name}: {row}")
    typer.echo(f"\nreport: {out / 'report.html'}")


# compare ----------------------------------------------------------------------------------------
@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories (or folders holding runs) to put side by side."),
    out: Path = typer.Option(..., "--out", help="Folder for table.md, table.csv, val_accuracy.png and report.html."),
    as_json: bool = typer.Option(False, "--json", help="Print the table rows as JSON on stdout."),
) -> None:
    """Side-by-side table (markdown + CSV) and val-accuracy curves of runs."""
    from imgcls.api import compare as compare_runs
    from imgcls.evaluation.compare import TABLE_MD

    _setup_logging()
    rows = compare_runs(runs, out)
    if as_json:
        _echo_json(rows)
        return
    table = (out / TABLE_MD).read_text(encoding="utf-8").splitlines()
    typer.echo("\n".join(line for line in table if line.startswith("|")))  # without title and footnotes
    typer.echo(str(out))


# predict ----------------------------------------------------------------------------------------
@app.command()
def predict(
    model: Path = typer.Argument(..., callback=_existing,
                                 help="Run directory, .pt checkpoint, .onnx, .ts or OpenVINO .xml file."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    topk: int = typer.Option(5, "--topk", min=1, help="How many classes to list per image."),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print predictions as one JSON list on stdout."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Print one JSON object per line on stdout as results "
                                                      "come (for any number of images)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Also write path, label, score, topk, unknown "
                                                                "to this CSV file."),
    sort_into: Optional[Path] = typer.Option(None, "--sort-into", help="Hard-link (or copy) each image into "
                                                                       "DIR/<predicted class>/, never overwriting; "
                                                                       "DIR/manifest.csv says what went where."),
    move: bool = typer.Option(False, "--move", help="With --sort-into: move the images instead."),
    reject_rate: float = typer.Option(0.05, "--reject-rate", min=0.0, max=0.99, help=REJECT_RATE_HELP),
    no_reject: bool = typer.Option(False, "--no-reject", help=NO_REJECT_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Predict the class of image files and folders ('unknown' for pictures of none of the classes; multi-label
    models: every label over its threshold); optionally write a CSV and sort the images by class."""
    from imgcls.api import Classifier

    _setup_logging(verbose)
    if as_json and jsonl:
        raise ImgclsError("give --json (one list) or --jsonl (one object per line), not both")
    classifier = Classifier.load(model, reject_rate=_reject_rate(reject_rate, no_reject))
    results = classifier.iter_predict(images, topk=topk, batch_size=batch_size, progress=_progress("predict"),
                                      csv=csv_path, sort_into=sort_into, move=move)
    if as_json:
        _echo_json(list(results))
        return
    for r in results:
        if jsonl:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        elif "labels" in r:  # multi-label: every label over its threshold
            sys.stdout.write(f"{r['path']}\t" + (", ".join(f"{t['label']} {t['score']:.3f}" for t in r["labels"])
                                                 or "-") + "\n")
        elif r.get("unknown"):
            sys.stdout.write(f"{r['path']}\tunknown (closest: {r['label']} {r['score']:.2f})\n")
        else:
            others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in r["topk"][1:])
            sys.stdout.write(f"{r['path']}\t{r['label']}\t{r['score']:.4f}" + (f"\t({others})" if others else "")
                             + "\n")
        sys.stdout.flush()


# embeddings -------------------------------------------------------------------------------------
@app.command()
def embed(
    model: Path = typer.Argument(..., callback=_existing,
                                 help="Run directory or .pt checkpoint (exported files have no embeddings)."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="FILE.parquet (columns path, embedding), or FILE.npy with "
                                                "FILE.csv (row, path) beside it."),
    batch_size: int = typer.Option(64, min=1, help="Images per forward pass."),
) -> None:
    """Embeddings of every image (the backbone's pooled features), from the per-file feature cache."""
    from imgcls.api import Classifier

    _setup_logging()
    embeddings = Classifier.load(model).embed(images, out=out, batch_size=batch_size)
    typer.echo(f"{len(embeddings)} embeddings of {embeddings.vectors.shape[1]} dims", err=True)
    typer.echo(str(out))


@app.command()
def similar(
    model: Path = typer.Argument(..., callback=_existing,
                                 help="Run directory or .pt checkpoint (exported files have no embeddings)."),
    image: Path = typer.Argument(..., help="The query image."),
    folder: Path = typer.Option(..., "--in", help="Folder of images to search (recursively)."),
    top: int = typer.Option(10, "--top", min=1, help="How many images to list."),
    as_json: bool = typer.Option(False, "--json", help='Print [{"path", "score"}] as JSON on stdout.'),
) -> None:
    """The images of a folder most like IMAGE (cosine similarity of embeddings), the query itself first
    when it is in the folder."""
    from imgcls.api import Classifier

    _setup_logging()
    found = Classifier.load(model).similar(image, folder, top=top)
    if as_json:
        _echo_json(found)
        return
    for item in found:
        typer.echo(f"{item['score']:.4f}\t{item['path']}")


# export -----------------------------------------------------------------------------------------
def _parity_text(name: str, parity: dict[str, Any], checked_on: str, against: str = "PyTorch") -> str:
    text = (f"{name} vs {against} on {checked_on}: max |diff| of probabilities {parity['max_abs_diff']:.2g}, "
            f"same top-1 on {parity['top1_agreement']:.1%}")
    if parity["accuracy"] is not None:
        text += f", accuracy {parity['reference_accuracy']:.4f} -> {parity['accuracy']:.4f}"
    return text


@app.command()
def export(
    model: Path = typer.Argument(..., callback=_existing,
                                 help="Run directory or .pt checkpoint."),
    fmt: str = typer.Option(..., "--format", help="onnx | torchscript | openvino | hf (a Hugging Face folder)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: onnxruntime static quantization "
                                                                    "calibrated on the run's training images."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file or folder (default: beside the "
                                                           "checkpoint, e.g. runs/NAME/best.onnx, runs/NAME/best-hf)."),
    data: Optional[str] = typer.Option(None, help="Images to check (val) and calibrate (train) on "
                                                  "(default: the run's own data)."),
    tolerance: Optional[float] = typer.Option(None, min=0.0, help="Largest allowed difference of probabilities "
                                                                  "(1e-3; 0.02 for hf, through transformers)."),
    max_accuracy_drop: float = typer.Option(0.05, min=0.0, max=1.0,
                                            help="int8: largest allowed val accuracy drop (0.05 = 5 points)."),
    as_json: bool = typer.Option(False, "--json", help="Print the export summary as JSON on stdout."),
) -> None:
    """Export to ONNX, TorchScript, OpenVINO or a Hugging Face folder (class names and preprocessing inside),
    then check it against PyTorch."""
    from imgcls.api import Classifier

    _setup_logging()
    result = Classifier.load(model).export(fmt, quantize=quantize, out=out, data=data, tolerance=tolerance,
                                           max_accuracy_drop=max_accuracy_drop)
    if as_json:
        _echo_json(result)
        return
    hf = result["format"] == "hf"
    name, against = ("hf through transformers", "imgcls") if hf else (result["format"], "PyTorch")
    typer.echo(_parity_text(name, result["parity"], result["checked_on"], against) +
               f" (tolerance {result['tolerance']:g})", err=True)
    if result.get("predict_parity"):
        typer.echo(_parity_text(name, result["predict_parity"], result["checked_on"],
                                "imgcls predict (large JPEGs decoded at reduced scale)"), err=True)
    if result["int8"]:
        int8 = result["int8"]
        typer.echo(_parity_text("int8", int8, result["checked_on"]), err=True)
        if int8["accuracy"] is not None:
            typer.echo(f"int8 val accuracy change: {100 * (int8['accuracy'] - int8['reference_accuracy']):+.2f} "
                       f"points", err=True)
    typer.echo(f"{result['size_bytes'] / 1e6:.1f} MB in {result['seconds']:.0f} s", err=True)
    typer.echo(result["path"])


# explain ----------------------------------------------------------------------------------------
@app.command()
def explain(
    model: Path = typer.Argument(..., callback=_existing,
                                 help="Run directory or .pt checkpoint (exported graphs have no layers "
                                      "to look into)."),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    out: Path = typer.Option(..., "--out", help="Folder for the overlays (NAME.gradcam.png)."),
    target: Optional[str] = typer.Option(None, "--class", help="Explain this class instead of the predicted one."),
    as_json: bool = typer.Option(False, "--json", help="Print [{path, label, score, overlay}] as JSON on stdout."),
) -> None:
    """Grad-CAM overlay per image: where the model looked for the class it predicted."""
    from imgcls.api import explain as run_explain

    _setup_logging()
    results = run_explain(model, images, out, target=target)
    if as_json:
        _echo_json(results)
        return
    for item in results:
        typer.echo(f"{item['path']}: {item['label']} {item['score']:.3f} -> {item['overlay']}")


# serve ------------------------------------------------------------------------------------------
@app.command()
def serve(
    model: Path = typer.Argument(..., callback=_existing,
                                 help="Run directory, .pt checkpoint, .onnx, .ts or OpenVINO .xml file."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: reachable from other machines)."),
    port: int = typer.Option(8000, help="TCP port."),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="Largest image accepted, in MB."),
    max_files: int = typer.Option(64, min=1, help="Most images in one request."),
    max_batch: int = typer.Option(32, min=1, help="Most images in one forward pass (requests arriving "
                                                  "together are batched)."),
    max_wait_ms: Optional[float] = typer.Option(None, min=0.0, help="How long a forward pass waits for more "
                                                "requests to join its batch (default: 0 on a CPU, 5 on a GPU)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    reject_rate: float = typer.Option(0.05, "--reject-rate", min=0.0, max=0.99, help=REJECT_RATE_HELP),
    no_reject: bool = typer.Option(False, "--no-reject", help=NO_REJECT_HELP),
) -> None:
    """HTTP API (/predict, /health, /docs) and an upload page (/) for a model."""
    from imgcls.api import Classifier

    _setup_logging()
    classifier = Classifier.load(model, device=device, reject_rate=_reject_rate(reject_rate, no_reject))
    classifier.serve(host=host, port=port, max_upload_mb=max_upload_mb, max_files=max_files, max_batch=max_batch,
                     max_wait_ms=max_wait_ms)


# split ------------------------------------------------------------------------------------------
@app.command("split")
def split_command(
    src: Path = typer.Argument(..., help="A folder of class folders."),
    out: Path = typer.Option(..., "--out", help="New folder for train/ val/ (test/)."),
    val: float = typer.Option(0.2, min=0.0, max=0.9, help="Validation share."),
    test: float = typer.Option(0.0, min=0.0, max=0.9, help="Test share."),
    seed: int = typer.Option(42, help="Random seed."),
) -> None:
    """Stratified, seeded split of one class-folder tree into train/val(/test) (hard links when possible)."""
    from imgcls.api import split

    _setup_logging()
    counts = split(src, out, val=val, test=test, seed=seed)
    for part, per_class in counts.items():
        typer.echo(f"{part}: {sum(per_class.values())} images  " + "  ".join(f"{c}={n}" for c, n in per_class.items()))
    typer.echo(str(out))


# doctor -----------------------------------------------------------------------------------------
@app.command()
def doctor(
    data: str = typer.Argument(..., help="Folder with train/ and val/ (test/), a folder of class folders, or a "
                                         "folder with labels.csv (multi-label)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes decoding files (by machine)."),
    labels: bool = typer.Option(False, "--labels", help="Also find training images whose label is probably "
                                                        "wrong (cross-validated heads on embeddings + cleanlab)."),
    model: Optional[Path] = typer.Option(None, "--model", help="With --labels: a run (or .pt) whose backbone "
                                                               "embeds the images (default: pretrained "
                                                               "efficientnet_lite0)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Check a data folder before training: broken files, odd images, duplicates, leaks (--labels: wrong labels)."""
    from imgcls.api import doctor as run_doctor
    from imgcls.data.doctor import format_report

    _setup_logging(verbose)
    report = run_doctor(data, labels=labels, model=model, progress=_progress("doctor"), workers=workers)
    if as_json:
        _echo_json(report.to_dict())
    else:
        typer.echo(format_report(report))


# bench ------------------------------------------------------------------------------------------
BENCH_SETTINGS = ("model", "strategy", "pretrained", "weights", "batch_size", "workers", "cache", "img_size",
                  "precision")


@app.command()
@with_train_options(only=BENCH_SETTINGS)
def bench(
    data: str = typer.Argument(..., help="Training data, as for `imgcls train`."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML train settings to measure with."),
    batches: int = typer.Option(4, min=1, help="Loader batches to time (after the first)."),
    steps: int = typer.Option(2, min=1, help="Training steps to time (after a warm-up step)."),
    **settings: Any,
) -> None:
    """Input pipeline vs model throughput: which one bounds training, and what to change."""
    from imgcls.api import bench as measure
    from imgcls.training.bench import describe

    _setup_logging()
    result = measure(data, batches=batches, steps=steps, config=config, **settings)
    if as_json:
        _echo_json(result)
    else:
        typer.echo(describe(result))


# models -----------------------------------------------------------------------------------------
@app.command("models")
def models_command(
    pattern: Optional[str] = typer.Argument(None, help="Name pattern: a word (resnet) or wildcards (convnext_*)."),
    offline: bool = typer.Option(False, "--offline", help="Only models whose weights are on this machine."),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
) -> None:
    """List the models --model takes, marking those with pretrained weights available offline."""
    from imgcls.api import list_models
    from imgcls.models.catalog import format_table

    entries = list_models(pattern, offline=offline)
    if as_json:
        _echo_json([e.to_dict() for e in entries])
        return
    typer.echo(format_table(entries))


class _Terminated(BaseException):
    """SIGTERM outside a training loop (which stops at a batch boundary by itself)."""


_MAIN_PID = os.getpid()


def _on_sigterm(signum: int, frame: Any) -> None:
    if os.getpid() != _MAIN_PID:  # a forked loader worker: just end, the main process reports
        os._exit(128 + signum)
    raise _Terminated


def main() -> None:
    tune_process()  # before torch loads; a command owns its process, a library user opts in
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except ImgclsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except _Terminated:
        typer.echo("terminated by SIGTERM", err=True)
        sys.exit(143)
    except OSError as exc:  # a full or read-only disk under a writer that is not imgcls's own (a logger)
        refused = storage_error(exc)
        if refused is None:
            raise
        typer.echo(f"error: {refused}", err=True)
        sys.exit(refused.exit_code)


def _end_daemon_children() -> None:
    """multiprocessing's exit handler sends its daemon children (loader workers) SIGTERM and waits for
    them without a limit; imgcls's training workers ignore SIGTERM, so a worker still alive would hold the
    exit for ever. They own no files: SIGKILL those that have not ended within a second."""
    children = [child for child in multiprocessing.active_children() if child.daemon]
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 1.0
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(5)


def run() -> None:
    """The ``imgcls`` executable: :func:`main`, then exit without the interpreter's teardown.

    Unloading torch, Lightning and the rest module by module took 2-3 s after every command. By then
    every file imgcls writes is closed (run-directory files are written atomically, Lightning has
    finalised the loggers), so what a normal exit still does is done here: exit handlers (they stop
    loader workers), other threads joined, streams flushed."""
    code: int = 0
    try:
        main()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # what the interpreter's exit does first: run threading's exit hooks (they end idle ThreadPoolExecutor
    # workers, which otherwise wait for work for ever), then join the other non-daemon threads
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    _end_daemon_children()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (imgcls predict ... | head)
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
