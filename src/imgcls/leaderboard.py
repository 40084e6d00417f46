"""The recipes ``--auto`` tried, best first: leaderboard.csv (for tools) and leaderboard.md (for people).

Each row: rank, recipe (its settings in words), held-out accuracy (on images carved from train, never
the val split the run reports), how it was held out, seconds, and whether it became the run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from imgcls.rundir import atomic_write_text

CSV = "leaderboard.csv"
MARKDOWN = "leaderboard.md"
COLUMNS = ("rank", "recipe", "heldout_accuracy", "heldout", "seconds", "chosen")


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best held-out accuracy first; on a tie, the cheaper recipe."""
    order = sorted(rows, key=lambda r: (-float(r["heldout_accuracy"]), float(r["seconds"])))
    return [{**row, "rank": i + 1} for i, row in enumerate(order)]


def write_leaderboard(folder: str | Path, rows: list[dict[str, Any]], note: str = "") -> None:
    folder = Path(folder)
    rows = ranked(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "heldout_accuracy": f"{float(row['heldout_accuracy']):.4f}",
                         "seconds": f"{float(row['seconds']):.1f}", "chosen": "yes" if row.get("chosen") else ""})
    atomic_write_text(folder / CSV, buffer.getvalue())
    lines = ["# Recipes tried by --auto", "",
             "Held-out accuracy is measured on images carved from train (k-fold or a held-out part), never on "
             "the val split this run reports. The chosen recipe (**bold**) is the one this run trained.", ""]
    if note:
        lines += [note, ""]
    lines += ["| rank | recipe | held-out accuracy | held out | seconds |", "|---:|---|---:|---|---:|"]
    for row in rows:
        recipe = f"**{row['recipe']}** (chosen)" if row.get("chosen") else row["recipe"]
        lines.append(f"| {row['rank']} | {recipe} | {float(row['heldout_accuracy']):.3f} | {row['heldout']} | "
                     f"{float(row['seconds']):.1f} |")
    atomic_write_text(folder / MARKDOWN, "\n".join(lines) + "\n")


def read_leaderboard(folder: str | Path) -> list[dict[str, str]] | None:
    path = Path(folder) / CSV
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
