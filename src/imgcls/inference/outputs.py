"""Predictions as files: a CSV of every answer, and the images sorted into one folder per class.

Both are fed one prediction at a time as the Predictor streams them, so a folder of any size is
written in bounded memory. The CSV goes to a temporary file renamed into place at the end: a reader
sees the previous CSV or the complete new one. Sorting never overwrites: a name already taken gets a
numbered suffix, or is left alone when it already holds the same file; every step is appended to
``manifest.csv`` in the destination.
"""

from __future__ import annotations

import csv
import filecmp
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from imgcls.errors import ImgclsError
from imgcls.inference.predictor import expand_image_paths
from imgcls.rundir import _FILE_MODE

log = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "label", "score", "topk", "unknown")
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("source", "destination", "label", "action")


def _write_error(path: Path, exc: OSError) -> ImgclsError:
    return ImgclsError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another place")


def predicted_labels(result: dict[str, Any]) -> list[str]:
    """The answer's label, or a multi-label answer's labels (possibly none)."""
    if "labels" in result:
        return [str(t["label"]) for t in result["labels"]]
    return [str(result["label"])]


def csv_row(result: dict[str, Any]) -> list[Any]:
    """path, label (a multi-label answer's labels joined by ``;``), score (its best label's), top-k as
    ``label:score; ...``, unknown (empty when the model has no such answer)."""
    topk = "; ".join(f"{t['label']}:{t['score']:.6f}" for t in result.get("topk", []))
    unknown = result.get("unknown")
    if "labels" in result:
        label = ";".join(predicted_labels(result))
        score = max((t["score"] for t in result["labels"]), default="")
    else:
        label, score = result.get("label", ""), result.get("score", "")
    return [result["path"], label, score, topk, "" if unknown is None else bool(unknown)]


class PredictionCsv:
    """A CSV of predictions, written as they come into a temporary file renamed into place by :meth:`commit`."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        self.tmp = Path(tmp)
        # errors: a file name that is not UTF-8 is written as its bytes, so the row names the very file
        self.handle: IO[str] = os.fdopen(fd, "w", newline="", encoding="utf-8", errors="surrogateescape")
        self.writer = csv.writer(self.handle)
        self.rows = 0
        self._write(CSV_COLUMNS)

    def _write(self, row: Any) -> None:
        try:
            self.writer.writerow(row)
        except OSError as exc:
            self.abort()
            raise _write_error(self.path, exc) from None

    def add(self, result: dict[str, Any]) -> None:
        self._write(csv_row(result))
        self.rows += 1

    def commit(self) -> None:
        try:
            self.handle.close()
            os.chmod(self.tmp, _FILE_MODE)  # mkstemp's files are private
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise _write_error(self.path, exc) from None
        log.info("wrote %d predictions to %s", self.rows, self.path)

    def abort(self) -> None:
        if not self.handle.closed:
            self.handle.close()
        self.tmp.unlink(missing_ok=True)


def folder_name(label: str) -> str:
    """A class name as a single folder name (labels come from folder names, but exports can hold any text)."""
    name = label.replace("/", "_").replace("\\", "_").replace("\0", "_").strip()
    return "_" if name in ("", ".", "..") else name


def _same_file(a: str | Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _place_new(source: str, target: Path, move: bool) -> str:
    """Put ``source`` at ``target``, which must not exist (FileExistsError otherwise, never an overwrite)."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # another filesystem, or links not allowed there: an exclusive copy
        with open(source, "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copystat(source, target)
        if move:
            os.unlink(source)
        return "moved" if move else "copied"
    if move:
        os.unlink(source)
        return "moved"
    return "linked"


class Sorter:
    """Hard links (copies where links fail, or moves) of images into ``root/<label>/``, never overwriting."""

    def __init__(self, root: str | Path, move: bool = False):
        self.root, self.move = Path(root).expanduser(), move
        self.counts: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        manifest = self.root / MANIFEST
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            new = not manifest.exists()
            self.manifest: IO[str] = open(manifest, "a", newline="", encoding="utf-8",  # noqa: SIM115
                                          errors="surrogateescape")  # as PredictionCsv's
        except OSError as exc:
            raise _write_error(manifest, exc) from None
        self.writer = csv.writer(self.manifest)
        if new:
            self.writer.writerow(MANIFEST_COLUMNS)
        self.resolved_root = self.root.resolve()

    def add(self, result: dict[str, Any]) -> None:
        """Into the folder of its label; a multi-label answer into the folder of each of its labels (moved
        into the first, linked from there into the others), none when it has no label."""
        source = result["path"]
        if self.holds(source):
            return
        for n, label in enumerate(predicted_labels(result)):
            folder = self.root / folder_name(label)
            try:
                folder.mkdir(exist_ok=True)
                target, action = self._place(source, folder, move=self.move and n == 0)
                self.writer.writerow([source, str(target), label, action])
                self.manifest.flush()
            except OSError as exc:
                raise _write_error(Path(exc.filename) if exc.filename else folder, exc) from None
            self.counts[label] += 1
            self.actions[action] += 1
            if action == "moved":
                source = str(target)

    def holds(self, path: str | Path) -> bool:
        """Whether ``path`` lies under the destination (sorted by an earlier run)."""
        return self.resolved_root in Path(path).resolve().parents

    def _place(self, source: str, folder: Path, move: bool) -> tuple[Path, str]:
        name = Path(source)
        for n in range(10_000):
            target = folder / (name.name if n == 0 else f"{name.stem}-{n}{name.suffix}")
            if target.exists() or target.is_symlink():
                if _same_file(source, target):
                    return target, "already there"
                continue
            try:
                return target, _place_new(source, target, move)
            except FileExistsError:  # taken meanwhile by another process: try the next name
                continue
        raise OSError(f"too many files named like {name.name} in {folder}")

    def close(self) -> None:
        self.manifest.close()
        per_class = ", ".join(f"{label} {n}" for label, n in sorted(self.counts.items()))
        done = ", ".join(f"{action} {n}" for action, n in sorted(self.actions.items()))
        log.info("sorted %d images into %s (%s; %s); manifest %s", sum(self.counts.values()), self.root,
                 per_class or "none", done or "nothing to do", self.root / MANIFEST)


class PredictionFiles:
    """The files ``predict`` writes besides its output (a CSV, a sorted folder), fed result by result."""

    def __init__(self, csv_path: str | Path | None = None, sort_into: str | Path | None = None, move: bool = False):
        if move and sort_into is None:
            raise ImgclsError("--move needs --sort-into DIR (the folder to move the images into)")
        self.csv = PredictionCsv(csv_path) if csv_path is not None else None
        self.sorter = Sorter(sort_into, move) if sort_into is not None else None

    def inputs(self, inputs: Iterable[str | Path]) -> Iterable[str | Path]:
        """The images to predict: with a sorted folder inside an input folder, its images (sorted by an earlier
        run) are left out, so running the same command again finds the same images."""
        if self.sorter is None:
            return inputs
        paths = expand_image_paths(inputs)
        kept = [p for p in paths if not self.sorter.holds(p)]
        if len(kept) < len(paths):
            log.info("left out %d images already under %s", len(paths) - len(kept), self.sorter.root)
        if not kept:
            raise ImgclsError(f"every image given is already under {self.sorter.root}; give the unsorted folder")
        return kept

    def add(self, result: dict[str, Any]) -> None:
        for sink in (self.csv, self.sorter):
            if sink is not None:
                sink.add(result)

    def __enter__(self) -> PredictionFiles:
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        if self.sorter is not None:
            self.sorter.close()
        if self.csv is not None:
            if kind is None:
                self.csv.commit()
            else:
                self.csv.abort()
