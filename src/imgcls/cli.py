"""The ``imgcls`` command: parse, call the Python API, print, map errors to exit codes.

User mistakes (:class:`ImgclsError`) print one line and exit 2; anything else is a bug (exit 1
with a traceback). ``--json`` output goes to stdout alone; logs and progress go to stderr.
"""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import os
import sys
import threading
import unicodedata
from pathlib import Path
from typing import Any, Optional

import typer

from imgcls.errors import ImgclsError

app = typer.Typer(
    name="imgcls",
    help="Train, evaluate, export and serve image classifiers from folders of photos.",
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

TRAIN_FLAGS = "Training settings (defaults in parentheses are decided from the data and model when empty)"


def _setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("imgcls")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _echo_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _progress(total_hint: str):  # noqa: ANN202 - returns a callback
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=total_hint, unit="img", file=sys.stderr, disable=total < 64, leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


# train ------------------------------------------------------------------------------------------
@app.command()
def train(
    data: Optional[str] = typer.Argument(None, help="Folder with train/ and val/, a folder of class folders, "
                                                    "or cifar10[:PATH]."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run from its last.pt."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of settings (keys as flags; flags win)."),
    model: Optional[str] = typer.Option(None, help="timm name, hf:DIR or hf:ORG/NAME (transformers), small_cnn/"
                                                   "cifar_cnn/resnet_cifar; `imgcls models` lists them "
                                                   "(efficientnet_lite0, ImageNet weights offline).",
                                        rich_help_panel=TRAIN_FLAGS),
    strategy: Optional[str] = typer.Option(None, help="scratch | feature-extraction (linear-probe) | finetune | "
                                                      "staged (feature-extraction when pretrained, else scratch).",
                                           rich_help_panel=TRAIN_FLAGS),
    weights: Optional[str] = typer.Option(None, help="Local pretrained weights file (.pt/.pth state dict).",
                                          rich_help_panel=TRAIN_FLAGS),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained",
                                              help="Start from pretrained weights (yes when available).",
                                              rich_help_panel=TRAIN_FLAGS),
    epochs: Optional[int] = typer.Option(None, help="Epochs (10).", rich_help_panel=TRAIN_FLAGS),
    batch_size: Optional[int] = typer.Option(None, help="Images per batch (32).", rich_help_panel=TRAIN_FLAGS),
    lr: Optional[str] = typer.Option(None, help="Learning rate, or auto: lr-find picks it (by strategy and "
                                                "optimizer).", rich_help_panel=TRAIN_FLAGS),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay (0.01).", rich_help_panel=TRAIN_FLAGS),
    img_size: Optional[int] = typer.Option(None, help="Input size in pixels (the model's own; scratch nets: "
                                                      "the data's).", rich_help_panel=TRAIN_FLAGS),
    optimizer: Optional[str] = typer.Option(None, help="adamw | sgd | adam (adamw).", rich_help_panel=TRAIN_FLAGS),
    scheduler: Optional[str] = typer.Option(None, help="cosine | step | plateau | none | onecycle (cosine).",
                                            rich_help_panel=TRAIN_FLAGS),
    warmup_epochs: Optional[int] = typer.Option(None, help="Linear warm-up epochs (0).", rich_help_panel=TRAIN_FLAGS),
    label_smoothing: Optional[float] = typer.Option(None, help="Label smoothing (0).", rich_help_panel=TRAIN_FLAGS),
    mixup: Optional[float] = typer.Option(None, help="Mixup alpha, 0 = off (0).", rich_help_panel=TRAIN_FLAGS),
    cutmix: Optional[float] = typer.Option(None, help="CutMix alpha, 0 = off (0).", rich_help_panel=TRAIN_FLAGS),
    balance: Optional[str] = typer.Option(None, help="Class imbalance: none | sampler | loss (none).",
                                          rich_help_panel=TRAIN_FLAGS),
    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without a better val accuracy.",
                                           rich_help_panel=TRAIN_FLAGS),
    seed: Optional[int] = typer.Option(None, help="Random seed (42).", rich_help_panel=TRAIN_FLAGS),
    precision: Optional[str] = typer.Option(None, help="32 | 16-mixed | bf16-mixed (bf16/16 on GPU, 32 on CPU).",
                                            rich_help_panel=TRAIN_FLAGS),
    devices: Optional[int] = typer.Option(None, help="Processes/GPUs on this machine (1).",
                                          rich_help_panel=TRAIN_FLAGS),
    num_nodes: Optional[int] = typer.Option(None, help="Machines (1).", rich_help_panel=TRAIN_FLAGS),
    workers: Optional[int] = typer.Option(None, help="Data loader processes (by machine).",
                                          rich_help_panel=TRAIN_FLAGS),
    val_split: Optional[float] = typer.Option(None, help="Validation share when imgcls splits DATA (0.2).",
                                              rich_help_panel=TRAIN_FLAGS),
    augment: Optional[str] = typer.Option(None, help="standard | light | none | translate (standard for fine-tuning, "
                                                     "else light).", rich_help_panel=TRAIN_FLAGS),
    hflip: Optional[bool] = typer.Option(None, "--hflip/--no-hflip", help="Random horizontal flips (yes).",
                                         rich_help_panel=TRAIN_FLAGS),
    head_epochs: Optional[int] = typer.Option(None, help="staged: epochs of stage 1, the head on cached features "
                                                         "(half of --epochs).", rich_help_panel=TRAIN_FLAGS),
    layer_decay: Optional[float] = typer.Option(None, help="Fine-tuning: lr factor per layer towards the input, "
                                                           "1 = off (0.85).", rich_help_panel=TRAIN_FLAGS),
    cache_features: Optional[bool] = typer.Option(None, "--cache-features/--no-cache-features",
                                                  help="Feature extraction: run the frozen backbone once and train "
                                                       "the head on cached features (yes).",
                                                  rich_help_panel=TRAIN_FLAGS),
    cifar_stem: Optional[bool] = typer.Option(None, "--cifar-stem/--no-cifar-stem",
                                              help="ResNets: 3x3 first conv, no max-pool, for tiny images (no).",
                                              rich_help_panel=TRAIN_FLAGS),
    cache: Optional[str] = typer.Option(None, help="Decoded-image cache: auto | on | off (auto: on for large "
                                                   "image files).", rich_help_panel=TRAIN_FLAGS),
    out: Optional[str] = typer.Option(None, help="Folder for run directories (runs).", rich_help_panel=TRAIN_FLAGS),
    name: Optional[str] = typer.Option(None, help="Run name (MODEL-STRATEGY; -2, -3... when taken).",
                                       rich_help_panel=TRAIN_FLAGS),
    logger: Optional[list[str]] = typer.Option(None, help="tensorboard | csv | wandb | mlflow | none; repeat or "
                                                          "comma-separate (tensorboard,csv).",
                                               rich_help_panel=TRAIN_FLAGS),
    experiment: Optional[str] = typer.Option(None, help="MLflow experiment / wandb project (imgcls).",
                                             rich_help_panel=TRAIN_FLAGS),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI ($MLFLOW_TRACKING_URI, else a file "
                                                          "store in RUN/logs/mlruns).", rich_help_panel=TRAIN_FLAGS),
    ema: Optional[bool] = typer.Option(None, "--ema/--no-ema", help="Also keep an exponential moving average of the "
                                                                    "weights; checkpoints hold whichever validates "
                                                                    "better (no).", rich_help_panel=TRAIN_FLAGS),
    ema_decay: Optional[float] = typer.Option(None, help="EMA decay, reached after a warm-up (0.999).",
                                              rich_help_panel=TRAIN_FLAGS),
    accumulate: Optional[int] = typer.Option(None, help="Batches whose gradients add up before each optimizer step "
                                                        "(1).", rich_help_panel=TRAIN_FLAGS),
    grad_clip: Optional[float] = typer.Option(None, help="Clip the gradient norm to this value (off).",
                                              rich_help_panel=TRAIN_FLAGS),
    calibrate: Optional[bool] = typer.Option(None, "--calibrate/--no-calibrate",
                                             help="After training, fit a temperature on val so scores are "
                                                  "calibrated, in best.pt and every export (yes).",
                                             rich_help_panel=TRAIN_FLAGS),
) -> None:
    """Train a classifier on DATA; writes a run directory and prints its path last."""
    flags = {k: v for k, v in locals().items() if k not in {"data", "resume", "config"} and v is not None}
    from imgcls.api import Classifier

    _setup_logging()
    if resume is not None:
        classifier = Classifier.resume(resume)
    else:
        classifier = Classifier.train(data, config=config, **flags)
    from imgcls.training.distributed import is_rank_zero

    if not is_rank_zero():  # the other processes of a distributed run: rank 0 reports
        return
    summary = classifier.run.read_metrics()
    typer.echo(f"best val_acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch']} "
               f"of {len(summary['epochs'])}, {summary['wall_seconds']:.0f} s", err=True)
    typer.echo(str(classifier.path))


# lr-find ----------------------------------------------------------------------------------------
def lr_find_command(**options: Any) -> None:
    """Suggest a learning rate (Lightning's range test) for DATA with the train options; writes lr_find.png."""
    from imgcls.api import find_lr

    _setup_logging()
    data, out, steps, as_json = (options.pop(k) for k in ("data", "out", "steps", "as_json"))
    flags = {k: v for k, v in options.items() if k != "config" and v is not None}
    finding = find_lr(data, out=out, steps=steps, config=options.get("config"), **flags)
    if as_json:
        _echo_json({k: v for k, v in finding.items() if k not in ("lrs", "losses")})
        return
    typer.echo(f"plot: {finding['plot']}", err=True)
    typer.echo(f"suggested learning rate: {finding['suggestion']:.3g} (train with --lr {finding['suggestion']:.3g})")


def _lr_find_signature() -> inspect.Signature:
    """train's DATA and options (same names and help), --out for the plot, --steps and --json."""
    params = [p for name, p in inspect.signature(train, eval_str=True).parameters.items()
              if name not in ("resume", "out")]
    params += [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                          default=typer.Option(Path("."), "--out", help="Folder for lr_find.png and lr_find.json.")),
        inspect.Parameter("steps", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=typer.Option(50, min=10, help="Batches of the range test.")),
        inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--json", help="Print the suggestion as JSON on stdout.")),
    ]
    return inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])


lr_find_command.__signature__ = _lr_find_signature()  # type: ignore[attr-defined]
lr_find_command.__annotations__ = {p.name: p.annotation for p in lr_find_command.__signature__.parameters.values()}
app.command("lr-find")(lr_find_command)


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


REJECT_RATE_HELP = ("Share of known images (the run's val photos) answered 'unknown'; sets the threshold of the "
                    "out-of-distribution score.")
NO_REJECT_HELP = "Never answer 'unknown' (the closest class always)."


def _reject_rate(reject_rate: float, no_reject: bool) -> float | None:
    return None if no_reject else reject_rate


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="Run directory, .pt checkpoint, .onnx or .ts file."),
    data: Optional[str] = typer.Option(None, help="Data folder (default: the run's own data and split)."),
    split: str = typer.Option("val", help="val | test"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average each image with its mirror."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for report.html and pictures "
                                                           "(default RUN/eval-SPLIT, or beside a model file)."),
    ood: Optional[Path] = typer.Option(None, "--ood", help="Folder of pictures of none of the classes: report "
                                                           "how many the model answers 'unknown' (and AUROC)."),
    reject_rate: float = typer.Option(0.05, "--reject-rate", min=0.0, max=0.99, help=REJECT_RATE_HELP),
) -> None:
    """Accuracy, macro F1, per-class report and confusion matrix of a model on a split; writes report.html."""
    from imgcls.api import Classifier
    from imgcls.evaluation.evaluate import default_report_dir

    _setup_logging()
    if split not in ("val", "test"):
        raise ImgclsError(f"--split must be val or test, not {split!r}")
    out = out or default_report_dir(model, split, data, tta)
    metrics = Classifier.load(model, reject_rate=reject_rate).evaluate(data, split=split, tta=tta, out=out, ood=ood,
                                                                       progress=_progress("evaluate"))
    if as_json:
        _echo_json(metrics)
        typer.echo(f"report: {out / 'report.html'}", err=True)
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
    model: Path = typer.Argument(..., help="Run directory, .pt checkpoint, .onnx or .ts file."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    topk: int = typer.Option(5, "--topk", min=1, help="How many classes to list per image."),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print predictions as JSON on stdout."),
    reject_rate: float = typer.Option(0.05, "--reject-rate", min=0.0, max=0.99, help=REJECT_RATE_HELP),
    no_reject: bool = typer.Option(False, "--no-reject", help=NO_REJECT_HELP),
) -> None:
    """Predict the class of image files and folders ('unknown' for pictures of none of the classes)."""
    from imgcls.api import Classifier

    _setup_logging()
    classifier = Classifier.load(model, reject_rate=_reject_rate(reject_rate, no_reject))
    results = classifier.predict(images, topk=topk, batch_size=batch_size, progress=_progress("predict"))
    if as_json:
        _echo_json(results)
        return
    for r in results:
        if r["unknown"]:
            typer.echo(f"{r['path']}\tunknown (closest: {r['label']} {r['score']:.2f})")
            continue
        others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in r["topk"][1:])
        typer.echo(f"{r['path']}\t{r['label']}\t{r['score']:.4f}" + (f"\t({others})" if others else ""))


# export -----------------------------------------------------------------------------------------
def _parity_text(name: str, parity: dict[str, Any], checked_on: str) -> str:
    text = (f"{name} vs PyTorch on {checked_on}: max |diff| of probabilities {parity['max_abs_diff']:.2g}, "
            f"same top-1 on {parity['top1_agreement']:.1%}")
    if parity["accuracy"] is not None:
        text += f", accuracy {parity['reference_accuracy']:.4f} -> {parity['accuracy']:.4f}"
    return text


@app.command()
def export(
    model: Path = typer.Argument(..., help="Run directory or .pt checkpoint."),
    fmt: str = typer.Option(..., "--format", help="onnx | torchscript"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: onnxruntime static quantization "
                                                                    "calibrated on the run's training images."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file or folder (default: beside the "
                                                           "checkpoint, e.g. runs/NAME/best.onnx)."),
    data: Optional[str] = typer.Option(None, help="Images to check (val) and calibrate (train) on "
                                                  "(default: the run's own data)."),
    tolerance: float = typer.Option(1e-3, min=0.0, help="Largest allowed difference of probabilities."),
    max_accuracy_drop: float = typer.Option(0.05, min=0.0, max=1.0,
                                            help="int8: largest allowed val accuracy drop (0.05 = 5 points)."),
    as_json: bool = typer.Option(False, "--json", help="Print the export summary as JSON on stdout."),
) -> None:
    """Export to ONNX or TorchScript (class names and preprocessing inside), then check it against PyTorch."""
    from imgcls.api import Classifier

    _setup_logging()
    result = Classifier.load(model).export(fmt, quantize=quantize, out=out, data=data, tolerance=tolerance,
                                           max_accuracy_drop=max_accuracy_drop)
    if as_json:
        _echo_json(result)
        return
    typer.echo(_parity_text(result["format"], result["parity"], result["checked_on"]) +
               f" (tolerance {result['tolerance']:g})", err=True)
    if result["int8"]:
        int8 = result["int8"]
        typer.echo(_parity_text("int8", int8, result["checked_on"]), err=True)
        if int8["accuracy"] is not None:
            typer.echo(f"int8 val accuracy change: {100 * (int8['accuracy'] - int8['reference_accuracy']):+.2f} "
                       f"points", err=True)
    typer.echo(f"{result['size_bytes'] / 1e6:.1f} MB in {result['seconds']:.0f} s", err=True)
    typer.echo(result["path"])


# serve ------------------------------------------------------------------------------------------
@app.command()
def serve(
    model: Path = typer.Argument(..., help="Run directory, .pt checkpoint, .onnx or .ts file."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: reachable from other machines)."),
    port: int = typer.Option(8000, help="TCP port."),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="Largest image accepted, in MB."),
    max_files: int = typer.Option(64, min=1, help="Most images in one request."),
    max_batch: int = typer.Option(32, min=1, help="Most images in one forward pass (requests arriving "
                                                  "together are batched)."),
    max_wait_ms: float = typer.Option(5.0, min=0.0, help="How long a forward pass waits for more requests."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    reject_rate: float = typer.Option(0.05, "--reject-rate", min=0.0, max=0.99, help=REJECT_RATE_HELP),
    no_reject: bool = typer.Option(False, "--no-reject", help=NO_REJECT_HELP),
) -> None:
    """HTTP API (/predict, /health, /docs) and an upload page (/) for a model."""
    from imgcls.api import Classifier

    _setup_logging()
    Classifier.load(model, device=device, reject_rate=_reject_rate(reject_rate, no_reject)).serve(host=host, port=port, max_upload_mb=max_upload_mb,
                                                max_files=max_files, max_batch=max_batch, max_wait_ms=max_wait_ms)


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
    data: str = typer.Argument(..., help="Folder with train/ and val/ (test/), or a folder of class folders."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes decoding files (by machine)."),
) -> None:
    """Check a data folder before training: broken files, odd images, empty classes, duplicates, leaks."""
    from imgcls.data.doctor import diagnose, format_report

    _setup_logging()
    report = diagnose(data, progress=_progress("doctor"), workers=workers)
    if as_json:
        _echo_json(report.to_dict())
    else:
        typer.echo(format_report(report))


# bench ------------------------------------------------------------------------------------------
@app.command()
def bench(
    data: str = typer.Argument(..., help="Training data, as for `imgcls train`."),
    model: Optional[str] = typer.Option(None, help="Model to measure (efficientnet_lite0)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML train settings to measure with."),
    batch_size: Optional[int] = typer.Option(None, help="Images per batch (32)."),
    workers: Optional[int] = typer.Option(None, help="Data loader processes (by machine)."),
    cache: Optional[str] = typer.Option(None, help="Decoded-image cache: auto | on | off."),
    img_size: Optional[int] = typer.Option(None, help="Input size in pixels (the model's own)."),
    precision: Optional[str] = typer.Option(None, help="32 | 16-mixed | bf16-mixed."),
    strategy: Optional[str] = typer.Option(None, help="As for train (decides which parameters train)."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained", help="As for train."),
    batches: int = typer.Option(4, min=1, help="Loader batches to time (after the first)."),
    steps: int = typer.Option(2, min=1, help="Training steps to time (after a warm-up step)."),
) -> None:
    """Input pipeline vs model throughput: which one bounds training, and what to change."""
    from imgcls.training.bench import bench as run_bench, describe

    _setup_logging()
    options = {k: v for k, v in dict(batch_size=batch_size, workers=workers, cache=cache, img_size=img_size,
                                     precision=precision, strategy=strategy, pretrained=pretrained).items()
               if v is not None}
    result = run_bench(data, model, batches=batches, steps=steps, config_file=config, **options)
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
    from imgcls.models.catalog import format_table, list_models

    entries = list_models(pattern, offline_only=offline)
    if as_json:
        _echo_json([e.to_dict() for e in entries])
        return
    typer.echo(format_table(entries))


def main() -> None:
    try:
        app()
    except ImgclsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


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
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
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
