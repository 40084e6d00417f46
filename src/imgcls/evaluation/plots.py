"""Pictures for people: learning curves, confusion matrices, reliability diagrams, run comparisons.

Korean class and run names render: NanumGothic (shipped by koreanize-matplotlib) is the default
family, so Hangul never falls back to missing-glyph boxes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from imgcls.evaluation.calibration import Calibration  # noqa: E402
from imgcls.evaluation.fonts import use_hangul_font  # noqa: E402
from imgcls.rundir import atomic_write_bytes  # noqa: E402

use_hangul_font()

DPI = 110
MAX_ANNOTATED_CLASSES = 30  # beyond this, numbers in confusion-matrix cells become unreadable
MAX_LABELLED_CLASSES = 60  # beyond this, tick labels overlap


def _save(fig: plt.Figure, path: Path, title: str) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return path


def _values(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [np.nan if row.get(key) is None else row[key] for row in rows]


def _best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if r.get("val_acc") is not None]
    return max(scored, key=lambda r: r["val_acc"]) if scored else None


def plot_curves(epochs: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train and val; a dotted line marks the best val epoch."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    x = [row["epoch"] for row in epochs]
    best = _best_row(epochs)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "acc")):
        for split, style in (("train", "o-"), ("val", "s-")):
            values = _values(epochs, f"{split}_{metric}")
            if not all(np.isnan(values)):
                ax.plot(x, values, style, label=split, markersize=4)
        if best is not None:
            ax.axvline(best["epoch"], color="grey", linestyle=":", label=f"best val (epoch {best['epoch']})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_title("loss (lower is better)")
    acc_ax.set_title("accuracy (higher is better)")
    acc_ax.set_ylim(0, 1.02)
    return _save(fig, path, title)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    """Counts (left) and row-normalised rates (right): rows are true classes, columns predicted."""
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = min(14.0, max(4.0, 0.45 * n + 2.5))
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, values, label, fmt in ((axes[0], counts, "count", "{:.0f}"),
                                   (axes[1], rates, "share of the true class (rows sum to 1)", "{:.2f}")):
        top = values.max() or 1
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        if n <= MAX_LABELLED_CLASSES:
            ax.set_xticks(range(n), classes, rotation=45, ha="right")
            ax.set_yticks(range(n), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
        if n <= MAX_ANNOTATED_CLASSES:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if values[i, j] > 0.6 * top else "black")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path, title)


def plot_reliability(result: Calibration, path: Path, title: str = "", before: Calibration | None = None) -> Path:
    """Accuracy against confidence per bin (a calibrated model follows the diagonal), and how many images
    fall in each bin; with ``before``, the curve before temperature scaling on the left."""
    shown = [(before, "before calibration: "), (result, "calibrated: ")] if before is not None else [(result, "")]
    fig, axes = plt.subplots(2, len(shown), figsize=(5 * len(shown), 6), height_ratios=[3, 1], sharex=True,
                             squeeze=False)
    for column, (calibration, label) in enumerate(shown):
        _reliability(axes[0, column], axes[1, column], calibration, label)
    return _save(fig, path, title)


def _reliability(ax: plt.Axes, count_ax: plt.Axes, result: Calibration, label: str) -> None:
    width = 1 / max(1, len(result.bins))
    filled = [b for b in result.bins if b.count]
    ax.bar([b.lower for b in filled], [b.accuracy for b in filled], width=width, align="edge", color="#4c78a8",
           edgecolor="white", label="accuracy in bin")
    ax.plot([b.lower + width / 2 for b in filled], [b.confidence for b in filled], "D", color="#e45756",
            markersize=6, label="mean confidence in bin")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_ylim(0, 1.03)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{label}ECE {result.ece:.3f}" if label else f"reliability: ECE {result.ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    count_ax.bar([b.lower for b in result.bins], [b.count for b in result.bins], width=width, align="edge",
                 color="#999999", edgecolor="white")
    count_ax.set_xlim(0, 1)
    count_ax.set_xlabel("confidence (top-1 probability)")
    count_ax.set_ylabel("images")


def plot_val_accuracy(runs: Sequence[tuple[str, list[dict[str, Any]]]], path: Path, title: str = "") -> Path:
    """Every run's val accuracy on shared axes: per epoch (left) and against training wall time (right)."""
    fig, (epoch_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for index, (label, rows) in enumerate(runs):
        rows = [r for r in rows if r.get("val_acc") is not None]
        if not rows:
            continue
        color = f"C{index % 10}"
        acc = [r["val_acc"] for r in rows]
        elapsed = np.cumsum([r.get("seconds") or 0.0 for r in rows])
        epoch_ax.plot([r["epoch"] for r in rows], acc, "o-", color=color, label=label, markersize=4)
        time_ax.plot(elapsed, acc, "o-", color=color, label=label, markersize=4)
        best = int(np.argmax(acc))
        epoch_ax.plot(rows[best]["epoch"], acc[best], "*", color=color, markersize=13)
        time_ax.plot(elapsed[best], acc[best], "*", color=color, markersize=13)
    epoch_ax.set_xlabel("epoch")
    epoch_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    time_ax.set_xlabel("training time (s, epochs added up)")
    time_ax.set_xlim(left=0)
    epoch_ax.set_ylabel("val accuracy")
    for ax in (epoch_ax, time_ax):
        ax.grid(alpha=0.3)
    epoch_ax.legend(fontsize=8)
    epoch_ax.set_title("val accuracy per epoch (star: best)")
    time_ax.set_title("val accuracy against training time")
    return _save(fig, path, title)
