"""``imgcls doctor``: what is wrong with a data folder, file by file, before an hour of training finds out.

Every problem has a stable ``kind`` (:data:`KINDS`), the path it concerns and a detail that says what
to do. ``imgcls train`` runs the same checks first (:func:`check_training_data`): broken files are
skipped and named, leakage, label conflicts and imbalance are warned about; only data that cannot
train at all (no images, a single class) is refused.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcls.data.cifar import is_cifar10_spec
from imgcls.data.filecheck import FileRecord, Progress, inspect_files
from imgcls.data.folders import class_dirs, data_folder, is_junk_file, report_ignored, walk_files
from imgcls.data.labels_csv import label_classes, labels_csv_of, read_labels_csv
from imgcls.data.similar import duplicate_problems
from imgcls.errors import DataError

log = logging.getLogger(__name__)

# kind -> what it means. Names are stable: scripts may rely on them (doctor --json).
KINDS = {
    "no-images": "no usable image at all: training is refused",
    "single-class": "only one class with images: training is refused",
    "missing": "a file that disappeared or cannot be read",
    "corrupt": "an image file that cannot be decoded (truncated download, damaged file): skipped",
    "not-an-image": "a file named like an image that is not one (text or HTML saved as .jpg): skipped",
    "decompression-bomb": "an image too large to decode safely: skipped",
    "too-slow": "an image that takes too long to decode (a pathological file): skipped",
    "ignored-file": "a file of a type imgcls does not read (.heic, .txt, ...): ignored",
    "unusual-mode": "an image stored unlike most (RGBA, palette, CMYK, 16-bit, grey): converted to RGB",
    "tiny": "an image far smaller than the others: blown up to the input size",
    "empty-class": "a class folder without a usable image: left out",
    "class-missing-from-split": "a class present in one split and absent from another",
    "duplicate": "the same file twice within a split (or under two classes: a label conflict)",
    "near-duplicate": "the same photo resized, re-compressed or edited, twice within a split",
    "leak": "the same photo (exact or near copy) in two splits: validation scores look too good",
    "imbalance": "a class with far fewer training images than the largest",
    "suspect-label": "a training image that looks like another class (doctor --labels): worst first",
    "unknown-label": "a val/test label of labels.csv that no training image has: ignored there",
    "empty-labels": "a row of labels.csv without a label: the image counts as showing none of the classes",
    "duplicate-row": "the same file listed twice in labels.csv with the same labels: the copy is ignored",
    "unlisted-file": "an image beside labels.csv without a row: ignored",
}
BLOCKING = ("no-images", "single-class")
FILE_FIXES = {
    "corrupt": "re-download or re-export it, or delete it; training skips it",
    "not-an-image": "it is not an image despite its name (e.g. a web page or text saved as an image); "
                    "delete it; training skips it",
    "decompression-bomb": "downscale it if it is a real photo, else delete it; training skips it",
    "missing": "check the file's permissions; training skips it",
    "too-slow": "re-export it as JPEG or PNG, or delete it; training skips it",
}
MODE_NOTES = {
    "RGBA": "transparent areas become white", "LA": "grey with transparency; transparent areas become white",
    "P": "palette colours expanded", "PA": "palette with transparency; transparent areas become white",
    "CMYK": "print colours (CMYK) converted", "L": "greyscale copied to three channels",
    "1": "black and white", "I;16": "16-bit values scaled to 8 bits", "I": "32-bit integers scaled to 8 bits",
    "F": "floating-point values scaled to 8 bits", "YCbCr": "converted", "LAB": "converted", "HSV": "converted",
}
TINY_SIDE = 32  # a shorter side below this (and below half the split's typical one) is tiny
IMBALANCE_RATIO = 5  # largest class / this class, in the training split


@dataclass
class Problem:
    path: str
    kind: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "detail": self.detail}


@dataclass
class Listing:
    """The image files of a data folder: split -> class -> paths (usable or not)."""

    root: Path
    layout: str  # "train-val" (train/ val/ test/) | "class-folders" (split by imgcls when training)
    files: dict[str, dict[str, list[str]]]
    others: list[str] = field(default_factory=list)  # files of types imgcls does not read
    junk: list[str] = field(default_factory=list)  # what file managers leave (.DS_Store, Thumbs.db)

    @property
    def train_split(self) -> str:
        return "train" if self.layout == "train-val" else "all"


@dataclass
class DoctorReport:
    data: str
    layout: str
    splits: dict[str, dict[str, int]]  # split -> class -> usable images
    problems: list[Problem]

    @property
    def images(self) -> int:
        return sum(sum(counts.values()) for counts in self.splits.values())

    @property
    def classes(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counts in self.splits.values():
            for name, count in counts.items():
                totals[name] = totals.get(name, 0) + count
        return dict(sorted(totals.items()))

    @property
    def can_train(self) -> bool:
        return not any(p.kind in BLOCKING for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "layout": self.layout, "images": self.images, "classes": self.classes,
                "splits": self.splits, "can_train": self.can_train,
                "problems": [p.to_dict() for p in self.problems]}


# listing a folder -------------------------------------------------------------------------------
def list_data(spec: str | Path) -> Listing:
    if is_cifar10_spec(spec):
        raise DataError("doctor checks folders of image files; CIFAR-10 comes as ready-made arrays, "
                        "nothing to check there")
    root = data_folder(spec)
    if (root / "train").is_dir():
        parts = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
        layout = "train-val"
    else:
        parts, layout = {"all": root}, "class-folders"
    listing = Listing(root, layout, {})
    for split, folder in parts.items():
        listing.files[split] = {}
        for name, class_folder in class_dirs(folder).items():
            images, others = walk_files(class_folder)
            listing.files[split][name] = images
            listing.others += [path for path in others if not is_junk_file(Path(path).name)]
            listing.junk += [path for path in others if is_junk_file(Path(path).name)]
    report_ignored(listing.others + listing.junk, root)
    return listing


# the checks -------------------------------------------------------------------------------------
def diagnose(spec: str | Path, progress: Progress | None = None, workers: int | None = None) -> DoctorReport:
    """Check every file of a data folder (decoding each once, cached) and every class and split."""
    if not is_cifar10_spec(spec):
        csvs = labels_csv_of(data_folder(spec))
        if csvs:  # multi-label data
            return diagnose_labels(spec, data_folder(spec), csvs, progress, workers)
    listing = list_data(spec)
    paths = [p for classes in listing.files.values() for files in classes.values() for p in files]
    records = {r.path: r for r in inspect_files(paths, decode=True, workers=workers, progress=progress)}
    problems = [Problem(path, "ignored-file", _ignored_detail(path)) for path in listing.others]
    problems += file_problems(listing.files, records)
    usable = {split: {name: [p for p in files if records[p].ok] for name, files in classes.items()}
              for split, classes in listing.files.items()}
    problems += class_problems(listing, usable)
    problems += [Problem(*found) for found in duplicate_problems(usable, records)]
    problems += imbalance_problems(usable.get(listing.train_split, {}), listing.root / listing.train_split
                                   if listing.layout == "train-val" else listing.root)
    counts = {split: {name: len(files) for name, files in classes.items()} for split, classes in usable.items()}
    return DoctorReport(str(spec), listing.layout, counts, problems)


# Multi-label data (labels.csv): the rows that cannot train end with exit 2 naming labels.csv:LINE (as
# training does); the rest -- unknown or empty labels, repeated rows, images without a row, broken or odd
# files -- are problems rows, with the counts of each label per split.
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


def _ignored_detail(path: str) -> str:
    suffix = Path(path).suffix.lower() or "no extension"
    hint = " (iPhone photos: convert HEIC to JPEG, e.g. with pillow-heif)" if suffix in (".heic", ".heif") else ""
    return f"{suffix} is not an image type imgcls reads; ignored: convert it to JPEG or PNG if it is a photo{hint}, " \
           f"else move it out of the class folder"


def file_problems(files: dict[str, dict[str, list[str]]], records: dict[str, FileRecord]) -> list[Problem]:
    """Unusable files, and usable ones stored unlike the rest (mode) or far too small."""
    problems = []
    for classes in files.values():
        split_records = [records[p] for paths in classes.values() for p in paths]
        good = [r for r in split_records if r.ok]
        usual_mode = Counter(r.mode for r in good).most_common(1)[0][0] if good else "RGB"
        typical_side = statistics.median(min(r.width, r.height) for r in good) if good else 0
        for record in split_records:
            if not record.ok:
                fix = FILE_FIXES.get(record.kind, "training skips it")
                problems.append(Problem(record.path, record.kind, f"{record.detail.rstrip('.')}: {fix}"))
                continue
            if record.mode not in ("RGB", usual_mode):
                note = MODE_NOTES.get(record.mode, "converted")
                problems.append(Problem(record.path, "unusual-mode",
                                        f"{record.format} stored as {record.mode} ({note}); converted to RGB for "
                                        f"training: fine, unless the picture looks wrong when opened"))
            side = min(record.width, record.height)
            if side < TINY_SIDE and side < typical_side / 2:
                problems.append(Problem(record.path, "tiny",
                                        f"{record.width}x{record.height} pixels while this split's images are "
                                        f"typically {typical_side:.0f} px on the shorter side; it is blown up to "
                                        f"the input size: delete it if it is a thumbnail or an icon"))
    return problems


def class_problems(listing: Listing, usable: dict[str, dict[str, list[str]]]) -> list[Problem]:
    """Empty classes, classes missing from a split, and data that cannot train at all."""
    problems = []
    train = listing.train_split
    train_classes = [name for name, files in usable.get(train, {}).items() if files]
    for split, classes in usable.items():
        folder = listing.root / split if listing.layout == "train-val" else listing.root
        for name, files in classes.items():
            if not files:
                effect = "left out of training" if split == train else "never checked (no images to score)"
                problems.append(Problem(str(folder / name), "empty-class",
                                        f"class folder '{name}' in {split}/ has no usable image, so the class is "
                                        f"{effect}: add images or remove the folder"))
        if split == train:
            continue
        for name in train_classes:
            if name not in classes:
                problems.append(Problem(str(folder / name), "class-missing-from-split",
                                        f"class '{name}' has no folder in {split}/, so its {split} accuracy is "
                                        f"never measured: add {split}/{name}/ with some of its images"))
        for name in classes:
            if name not in usable.get(train, {}):
                problems.append(Problem(str(folder / name), "class-missing-from-split",
                                        f"{split}/{name}/ is not a class in {train}/: its images are ignored; "
                                        f"add {train}/{name}/ or move the folder out"))
    where = str(listing.root / train) if listing.layout == "train-val" else str(listing.root)
    if not train_classes:
        problems.append(Problem(where, "no-images", f"no usable image in class folders under {where}: expected "
                                                    f"{where}/<class>/<image files>; training is refused"))
    elif len(train_classes) == 1:
        problems.append(Problem(where, "single-class",
                                f"only one class ({train_classes[0]}) has images under {where}; a classifier needs "
                                f"at least two class folders; training is refused"))
    return problems


def imbalance_problems(train: dict[str, list[str]], folder: Path) -> list[Problem]:
    counts = {name: len(files) for name, files in train.items() if files}
    if len(counts) < 2:
        return []
    biggest = max(counts, key=counts.get)
    return [Problem(str(folder / name), "imbalance",
                    f"class '{name}' has {n} training images, {counts[biggest] / n:.0f}x fewer than "
                    f"'{biggest}' ({counts[biggest]}); accuracy will favour the big classes: add images, or train "
                    f"with --balance sampler (or --balance loss)")
            for name, n in sorted(counts.items()) if counts[biggest] >= IMBALANCE_RATIO * n]


def group_by_kind(problems: list[Problem]) -> dict[str, list[Problem]]:
    by_kind: dict[str, list[Problem]] = {}
    for problem in problems:
        by_kind.setdefault(problem.kind, []).append(problem)
    return by_kind


# before training --------------------------------------------------------------------------------
WARN_KINDS = ("leak", "duplicate", "near-duplicate", "imbalance")
NAMED_PER_KIND = 10


def training_problems(source: Any) -> list[Problem]:
    """Leaks, duplicates and imbalance in a resolved :class:`~imgcls.data.source.DataSource` (its
    broken files are already left out and listed in ``source.skipped``)."""
    if not source.files:
        return []  # array data (CIFAR-10): nothing on disk to check
    usable = {split: {name: [] for name in source.classes} for split in source.files}
    for split, samples in source.files.items():
        for path, label in samples:
            usable[split][source.classes[label]].append(path)
    paths = [path for samples in source.files.values() for path, _ in samples]
    # decode=False: records decoded while scanning (or by an earlier doctor run) come from the cache.
    records = {r.path: r for r in inspect_files(paths, decode=False)}
    problems = [Problem(*found) for found in duplicate_problems(usable, records)]
    train_folder = source.root / "train" if source.kind == "train-val" and source.root else source.root
    return problems + imbalance_problems(usable.get("train", {}), Path(train_folder or source.spec))


def check_training_data(source: Any) -> list[Problem]:
    """Warn (stderr) about what would quietly poison a run: leaks, label conflicts, duplicates, imbalance."""
    problems = training_problems(source)
    by_kind = group_by_kind(problems)
    for kind in WARN_KINDS:
        found = by_kind.get(kind, [])
        if not found:
            continue
        unit = ("class" if kind == "imbalance" else "file") + ("" if len(found) == 1 else "es" if kind == "imbalance"
                                                               else "s")
        log.warning("%s: %d %s (%s)", kind, len(found), unit, KINDS[kind])
        for problem in found[:NAMED_PER_KIND]:
            log.warning("  %s: %s", problem.path, problem.detail)
        if len(found) > NAMED_PER_KIND:
            log.warning("  ... and %d more: `imgcls doctor %s` lists them all", len(found) - NAMED_PER_KIND,
                        source.spec)
    return problems


# text output ------------------------------------------------------------------------------------
def format_report(report: DoctorReport, limit: int = 20) -> str:
    """A table of counts, then the problems grouped by kind (``limit`` per kind; --json lists all)."""
    splits = list(report.splits)
    names = list(report.classes)
    width = max([10, *(len(n) + 2 for n in names)])
    lines = [f"{report.data}: {report.images} usable images in {len(names)} classes ({report.layout})", "",
             f"{'class':<{width}}" + "".join(f"{s:>8}" for s in splits)]
    for name in names:
        lines.append(f"{name:<{width}}" + "".join(f"{report.splits[s].get(name, '-')!s:>8}" for s in splits))
    if not report.problems:
        lines += ["", "no problems found"]
        return "\n".join(lines)
    by_kind = group_by_kind(report.problems)
    lines += ["", f"{len(report.problems)} problems:"]
    for kind in [k for k in KINDS if k in by_kind] + [k for k in by_kind if k not in KINDS]:
        found = by_kind[kind]
        lines += ["", f"{kind} ({len(found)}): {KINDS.get(kind, '')}"]
        lines += [f"  {p.path}\n      {p.detail}" for p in found[:limit]]
        if len(found) > limit:
            lines.append(f"  ... and {len(found) - limit} more (--json lists all)")
    if not report.can_train:
        lines += ["", "this data cannot train as it is: fix the problems marked as refused above"]
    return "\n".join(lines)
