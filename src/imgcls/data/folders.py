"""Reading class-folder trees (the torchvision ImageFolder layout) without surprises.

Class names are folder names in any script (Korean included), sorted so labels are stable.
Files that are not images are ignored; images that cannot be decoded are skipped and reported
with the reason, so a run never dies an hour in on a text file saved as .jpg.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgcls.data.filecheck import FULL_CHECK_LIMIT, PARALLEL_MIN_FILES, check_in_background, inspect_files
from imgcls.data.images import is_image_file
from imgcls.errors import DataError

log = logging.getLogger(__name__)

Sample = tuple[str, int]  # (path, label)


@dataclass
class Skipped:
    path: str
    kind: str
    detail: str


@dataclass
class FolderScan:
    """The images found under one class-folder tree."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for _, label in self.samples:
            counts[self.classes[label]] += 1
        return counts


def data_folder(spec: str | Path) -> Path:
    """DATA as an existing folder; :class:`DataError` naming the path and what is expected otherwise."""
    root = Path(spec).expanduser()
    if not root.exists():
        raise DataError(f"data folder not found: {root}; give a folder with train/ and val/ class folders, "
                        f"a folder of class folders, or cifar10[:PATH]")
    if not root.is_dir():
        raise DataError(f"data must be a folder, not a file: {root}")
    return root


def class_dirs(root: Path) -> dict[str, Path]:
    """Class name -> folder, for the sub-folders of ``root`` that can be classes (hidden ones excluded),
    sorted by name."""
    # NFC names so a class named on macOS (NFD file names) matches the same name typed elsewhere;
    # the path keeps the name as it is on disk.
    return dict(sorted((unicodedata.normalize("NFC", entry.name), Path(entry.path)) for entry in os.scandir(root)
                       if entry.is_dir() and not entry.name.startswith((".", "__"))))


# What file managers and cameras leave in folders: ignored without a word.
JUNK_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})


def is_junk_file(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_FILES


def walk_files(folder: Path) -> tuple[list[str], list[str]]:
    """(image files, every other file) under ``folder``, nested folders included (hidden ones not), sorted."""
    images, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            (images if is_image_file(name) else ignored).append(os.path.join(dirpath, name))
    return images, ignored


def start_checking(root: Path) -> None:
    """Begin checking the images under ``root`` in the background (:func:`check_in_background`), for a folder
    of at most ``PARALLEL_MIN_FILES`` images; their paths are spelled as :func:`scan_folder` spells them."""
    images: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        images += (os.path.join(dirpath, name) for name in sorted(filenames) if is_image_file(name))
        if len(images) > PARALLEL_MIN_FILES:
            return
    if images:
        check_in_background(images)


def class_files(folder: Path) -> tuple[list[str], list[str]]:
    """(image files, other files that are not junk) under ``folder``, nested folders included, sorted."""
    images, ignored = walk_files(folder)
    return images, [path for path in ignored if not is_junk_file(Path(path).name)]


def ignored_note(ignored: Sequence[str]) -> str:
    """'ignored 310 files that are not images by their extension (.txt 2, .bin 11, ...)', most common first."""
    kinds = Counter(Path(path).suffix.lower() or "no extension" for path in ignored)
    listed = ", ".join(f"{kind} {count}" for kind, count in kinds.most_common(8))
    more = ", ..." if len(kinds) > 8 else ""
    return f"ignored {len(ignored)} file{'s' * (len(ignored) != 1)} that are not images by their extension " \
           f"({listed}{more}); --verbose names them"


def report_ignored(ignored: Sequence[str], where: str | Path) -> None:
    """One line counting the files passed over as not images, and each one's name with --verbose."""
    if not ignored:
        return
    log.info("%s: %s", where, ignored_note(ignored))
    for path in ignored:
        log.debug("ignored %s: not an image by its extension", path)


def check_files(paths: list[str], decode: bool | None = None) -> list[Skipped]:
    """Files that cannot be used, with the reason. Every pixel is decoded (so a truncated download is
    caught here, not an hour into training) unless there are more than FULL_CHECK_LIMIT files not
    checked before; then only headers are read and the rest is left to the loaders."""
    if decode is None:
        decode = len(paths) <= FULL_CHECK_LIMIT
        if not decode:
            log.info("%d images: reading headers only; `imgcls doctor DATA` decodes every file once "
                     "(cached) and finds duplicates and leaks", len(paths))
    return [Skipped(r.path, r.kind, r.detail) for r in inspect_files(paths, decode=decode) if not r.ok]


def scan_folder(root: str | Path, classes: list[str] | None = None) -> FolderScan:
    """Images under ``root/<class>/`` (nested folders included).

    With ``classes`` given (the training classes, when scanning val/test), labels follow that
    order and folders of other names are skipped with a warning.
    """
    root = Path(root)
    found = class_dirs(root)
    order = list(classes) if classes is not None else list(found)
    index = {name: i for i, name in enumerate(order)}
    samples: list[Sample] = []
    ignored: list[str] = []
    for name, folder in found.items():
        if name not in index:
            log.warning("%s/%s: class not in training classes %s; skipped", root, name, order)
            continue
        images, others = walk_files(folder)
        samples.extend((path, index[name]) for path in images)
        ignored += others
    report_ignored(ignored, root)
    skipped = check_files([path for path, _ in samples])
    bad = {s.path for s in skipped}
    samples = [s for s in samples if s[0] not in bad]
    scan = FolderScan(root, order, samples, skipped)
    scan.empty_classes = [name for name, count in scan.counts().items() if count == 0]
    return scan


def drop_empty_classes(scan: FolderScan) -> FolderScan:
    """The scan without classes that hold no valid image (labels renumbered)."""
    if not scan.empty_classes:
        return scan
    keep = [name for name in scan.classes if name not in scan.empty_classes]
    remap = {scan.classes.index(name): i for i, name in enumerate(keep)}
    samples = [(path, remap[label]) for path, label in scan.samples]
    return FolderScan(scan.root, keep, samples, scan.skipped, scan.empty_classes)
