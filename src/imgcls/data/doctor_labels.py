"""``imgcls doctor`` for multi-label data (labels.csv): the rows that cannot train end with exit 2 naming
``labels.csv:LINE`` (as training does); the rest -- unknown or empty labels, repeated rows, images without a
row, broken or odd files -- are problems rows, with the counts of each label per split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgcls.data.doctor import DoctorReport, Problem, file_problems
from imgcls.data.filecheck import Progress, inspect_files
from imgcls.data.labels_csv import label_classes, read_labels_csv


@dataclass
class LabelsDoctorReport(DoctorReport):
    """A doctor report whose per-split counts are images per label (an image counts under each of its labels)."""

    image_count: int = 0

    @property
    def images(self) -> int:
        return self.image_count


def diagnose_labels(spec: str | Path, root: Path, csvs: dict[str, Path], progress: Progress | None = None,
                    workers: int | None = None) -> DoctorReport:
    train = read_labels_csv(csvs.get("train") or csvs["all"])
    classes = label_classes(train.rows, train.csv)
    tables = {"all" if "all" in csvs else "train": train}
    for split in ("val", "test"):
        if split in csvs:
            tables[split] = read_labels_csv(csvs[split], known=classes)
    paths = [row.path for table in tables.values() for row in table.rows]
    records = {r.path: r for r in inspect_files(paths, decode=True, workers=workers, progress=progress)}
    problems = [Problem(p.path, p.kind, p.detail) for table in tables.values() for p in table.problems]
    # file_problems reads split -> class -> files; one pseudo-class per split is enough for its checks.
    problems += file_problems({split: {"*": [row.path for row in table.rows]} for split, table in tables.items()},
                              records)
    counts, usable = {}, 0
    for split, table in tables.items():
        rows = [row for row in table.rows if records[row.path].ok]
        counts[split] = {name: sum(name in row.labels for row in rows) for name in classes}
        usable += len(rows)
    return LabelsDoctorReport(str(spec), "labels-csv", counts, problems, image_count=usable)
