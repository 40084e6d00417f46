"""Multi-label data: a folder of images with ``labels.csv`` (``path,labels``), the fastai / Kaggle convention.

Paths in the CSV are relative to the CSV's folder; labels are separated by ``;`` or spaces. Either one
``DATA/labels.csv`` (split into train/val, seeded, recorded in split.json) or ``DATA/train/labels.csv`` and
``DATA/val/labels.csv`` (optional ``DATA/test/labels.csv``). The classes are the sorted set of the
training labels. Rows that cannot train (malformed, a missing file, one file listed twice with different
labels) end the run with a :class:`DataError` naming ``labels.csv:LINE``; the rest are problems rows
(:class:`LabelsProblem`) that doctor lists and training warns about.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcls.data.folders import Skipped, check_files, class_files
from imgcls.errors import DataError

log = logging.getLogger(__name__)

LABELS_CSV = "labels.csv"
SPLITS = ("train", "val", "test")
SEPARATORS = re.compile(r"[;\s]+")
NAMED_ROWS = 5  # blocking rows named in one error message


@dataclass(frozen=True)
class CsvRow:
    line: int  # 1-based line of the CSV
    path: str  # the image file, joined to the CSV's folder
    labels: tuple[str, ...]


@dataclass
class LabelsProblem:
    path: str  # "DATA/labels.csv:LINE" for a row, the file for files without a row
    kind: str
    detail: str


@dataclass
class LabelsFile:
    csv: Path
    rows: list[CsvRow]
    problems: list[LabelsProblem] = field(default_factory=list)


def labels_csv_of(root: Path) -> dict[str, Path] | None:
    """split -> labels.csv of a multi-label data folder ("all" for one CSV to split); None when not one."""
    if (root / LABELS_CSV).is_file():
        return {"all": root / LABELS_CSV}
    found = {split: root / split / LABELS_CSV for split in SPLITS if (root / split / LABELS_CSV).is_file()}
    if not found:
        return None
    if "train" not in found:
        raise DataError(f"{root} has {', '.join(f'{s}/{LABELS_CSV}' for s in found)} but no train/{LABELS_CSV}; "
                        f"add train/{LABELS_CSV} (path,labels) or put one {LABELS_CSV} at {root}")
    return found


def split_labels(cell: str) -> tuple[str, ...]:
    return tuple(label for label in SEPARATORS.split(cell.strip()) if label)


def _is_header(cells: list[str], folder: Path) -> bool:
    first = cells[0].strip() if cells else ""
    return not (folder / first).is_file() and Path(first).suffix == ""


def read_labels_csv(csv_path: Path, known: list[str] | None = None) -> LabelsFile:
    """The rows of one labels.csv; :class:`DataError` naming the rows that cannot train.

    ``known`` (the training classes, when reading val/test) turns labels outside it into problems rows
    (the label is dropped there)."""
    folder = csv_path.parent
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{csv_path} is not UTF-8 text; save it as UTF-8 CSV (path,labels)") from None
    except OSError as exc:
        raise DataError(f"cannot read {csv_path} ({exc.strerror}); check its permissions") from None
    rows: list[CsvRow] = []
    blocking: list[str] = []
    problems: list[LabelsProblem] = []
    seen: dict[str, CsvRow] = {}
    for number, cells in enumerate(csv.reader(text.splitlines()), start=1):
        where = f"{csv_path}:{number}"
        if not any(cell.strip() for cell in cells):
            continue
        if number == 1 and _is_header(cells, folder):
            continue
        if len(cells) != 2 or not cells[0].strip():
            blocking.append(f"{where}: expected 2 columns 'path,labels' (labels separated by ; or spaces, "
                            f"quoted if they hold commas), got {len(cells)}: {','.join(cells)[:80]!r}")
            continue
        path = os.path.normpath(folder / cells[0].strip())
        if not os.path.isfile(path):
            blocking.append(f"{where}: {cells[0].strip()} not found (paths are relative to {folder}); "
                            f"fix the path or delete the row")
            continue
        labels = tuple(sorted(set(split_labels(cells[1]))))
        if known is not None:
            unknown = [label for label in labels if label not in known]
            if unknown:
                problems.append(LabelsProblem(where, "unknown-label",
                                              f"label(s) {', '.join(unknown)} of {cells[0].strip()} are not among the "
                                              f"training labels ({', '.join(known)}); they are ignored: fix the "
                                              f"spelling or add training images with them"))
                labels = tuple(label for label in labels if label in known)
        if not labels:
            problems.append(LabelsProblem(where, "empty-labels",
                                          f"{cells[0].strip()} has no label; it counts as showing none of the "
                                          f"classes: add its labels if that is a mistake"))
        row = CsvRow(number, path, labels)
        if path in seen:
            first = seen[path]
            if first.labels != labels:
                blocking.append(f"{where}: {cells[0].strip()} is listed again with other labels "
                                f"({' '.join(labels) or 'none'}) than on line {first.line} "
                                f"({' '.join(first.labels) or 'none'}); keep one row")
            else:
                problems.append(LabelsProblem(where, "duplicate-row", f"{cells[0].strip()} repeats line "
                                                                      f"{first.line}; the copy is ignored"))
            continue
        seen[path] = row
        rows.append(row)
    if blocking:
        more = f" (and {len(blocking) - NAMED_ROWS} more rows)" if len(blocking) > NAMED_ROWS else ""
        raise DataError("; ".join(blocking[:NAMED_ROWS]) + more)
    if not rows:
        raise DataError(f"{csv_path} lists no image; expected rows 'path,labels' such as 'img001.jpg,cat;dog'")
    listed = set(seen)
    images, _ = class_files(folder)
    problems += [LabelsProblem(path, "unlisted-file", f"image without a row in {csv_path.name}; ignored: add a "
                                                      f"row 'path,labels' for it or move it out")
                 for path in images if os.path.normpath(path) not in listed]
    return LabelsFile(csv_path, rows, problems)


def label_classes(rows: list[CsvRow], where: Path) -> list[str]:
    classes = sorted({label for row in rows for label in row.labels})
    if len(classes) < 2:
        raise DataError(f"{where} names {len(classes)} label(s) ({', '.join(classes) or 'none'}); a multi-label "
                        f"classifier needs at least two")
    return classes


def as_samples(rows: list[CsvRow], classes: list[str]) -> list[tuple[str, tuple[int, ...]]]:
    """(path, sorted class indices) per row: the multi-label form of a sample."""
    index = {name: i for i, name in enumerate(classes)}
    return [(row.path, tuple(sorted(index[label] for label in row.labels if label in index))) for row in rows]


def random_split(rows: list[CsvRow], classes: list[str], val: float, seed: int) -> dict[str, list[CsvRow]]:
    """A seeded train/val split that gives val at least one image of every label seen twice or more."""
    order = sorted(rows, key=lambda r: r.path)
    random.Random(seed).shuffle(order)
    count = min(len(order) - 1, max(1, round(len(order) * val)))
    parts = {"val": order[:count], "train": order[count:]}
    for name in classes:
        holders = [r for r in parts["train"] if name in r.labels]
        if len(holders) >= 2 and not any(name in r.labels for r in parts["val"]):
            parts["train"].remove(holders[0])
            parts["val"].append(holders[0])
    return {split: sorted(part, key=lambda r: r.path) for split, part in parts.items()}


def split_record(root: Path, parts: dict[str, list[CsvRow]], classes: list[str], seed: int,
                 val: float) -> dict[str, Any]:
    return {"source": str(root), "task": "multilabel", "seed": seed, "fractions": {"val": val}, "classes": classes,
            **{split: [os.path.relpath(r.path, root) for r in part] for split, part in parts.items()}}


@dataclass
class LabelsData:
    """What a multi-label folder's labels.csv files give its DataSource (data/source.py builds it)."""

    classes: list[str]
    files: dict[str, list]  # split -> (path, multi-hot label tuple) samples of readable images
    skipped: list[Skipped]
    split: dict[str, Any] | None  # split.json, when imgcls made the split


def read_labels_data(root: Path, csvs: dict[str, Path], val_split: float, seed: int,
                     recorded: dict[str, Any] | None = None) -> LabelsData:
    """The classes and per-split samples of a multi-label folder (``recorded``: a run's split.json)."""
    first = read_labels_csv(csvs.get("train") or csvs["all"])
    classes = label_classes(first.rows, first.csv)
    files: dict[str, list[CsvRow]] = {}
    problems = list(first.problems)
    if "all" in csvs:
        if recorded:
            chosen = {split: {os.path.normpath(root / p) for p in recorded.get(split, [])} for split in SPLITS}
            files = {split: [r for r in first.rows if r.path in paths] for split, paths in chosen.items() if paths}
        else:
            files = random_split(first.rows, classes, val_split, seed)
    else:
        files["train"] = first.rows
        for split in ("val", "test"):
            if split in csvs:
                found = read_labels_csv(csvs[split], known=classes)
                files[split], problems = found.rows, problems + found.problems
        if not files.get("val"):
            raise DataError(f"{root} has train/{LABELS_CSV} but no val/{LABELS_CSV}; add val/ with its own "
                            f"{LABELS_CSV}, or put one {LABELS_CSV} at {root} to have it split")
    for problem in problems:
        log.warning("%s (%s): %s", problem.path, problem.kind, problem.detail)
    skipped = check_files([r.path for part in files.values() for r in part])
    bad = {s.path for s in skipped}
    samples = {split: as_samples([r for r in part if r.path not in bad], classes) for split, part in files.items()}
    split = (recorded or split_record(root, files, classes, seed, val_split)) if "all" in csvs else None
    return LabelsData(classes, samples, skipped, split)
