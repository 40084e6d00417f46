"""The run directory: the only thing the stages share (docs/run-directory.md).

Training writes it; evaluate, predict, export, serve and compare read it. Files are written
atomically (temp file + rename) so a killed process never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from imgcls.cache import cache_dir
from imgcls.errors import RunDirError, first_line, storage_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are private (0600)


def write_fix(path: Path) -> str:
    """How to get a write to ``path`` through: another cache folder for caches, else another --out."""
    try:
        Path(path).resolve().relative_to(cache_dir().resolve())
    except ValueError:
        return "use --out on another disk"
    return "point IMGCLS_CACHE at another disk"


@contextmanager
def refused_writes(path: str | os.PathLike) -> Iterator[None]:
    """Turns a write that the disk refuses (full, over quota, read-only, no permission) into a
    :class:`StorageError` naming ``path``: one line for the user instead of a traceback."""
    try:
        yield
    except OSError as exc:
        refused = storage_error(exc, path, write_fix(Path(path)))
        if refused is None or refused is exc:
            raise
        raise refused from None


def writable_folder(folder: Path, what: str = "the report") -> Path:
    """``folder``, made if missing; :class:`RunDirError` naming it, why, and ``what`` goes there when it cannot be
    written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        read_only = hasattr(os, "statvfs") and bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        reason = ("read-only file system" if read_only
                  else None if os.access(folder, os.W_OK) else "permission denied")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
    if reason:
        raise RunDirError(f"cannot write {what} into {folder} ({reason}); choose a folder you can write to with "
                          "--out DIR")
    return folder


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` into ``path`` through a temp file and a rename: the old file or the new one, never half
    of one. A disk that refuses the write raises :class:`StorageError` naming ``path``."""
    path = Path(path)
    with refused_writes(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_copy(source: Path, target: Path) -> None:
    """A copy of ``source`` (with its times) that appears at ``target`` only once complete."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    with refused_writes(target):
        try:
            shutil.copy2(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8; a file name in ``text`` that is not UTF-8 shows its odd bytes as ``\\xNN`` (:func:`utf8_name`)."""
    atomic_write_bytes(path, utf8_name(text).encode("utf-8"))


def utf8_name(path: str) -> str:
    """``path`` as valid UTF-8 text: a file name that is not (Python keeps its bytes as lone surrogates) gets
    ``\\xNN`` escapes for those bytes, as ``ls -b`` shows it; for formats that hold only UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def write_json(path: Path, data: Any) -> None:
    """Names in any script as they are; a file name that is not valid UTF-8 (Python keeps its bytes as lone
    surrogates) makes the whole file ASCII, with ``\\u`` escapes that read back as the same name."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        encoded = (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode("ascii")
    atomic_write_bytes(path, encoded)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or first_line(exc, 120)
        raise RunDirError(f"cannot read {path} ({reason}); the run directory is damaged, retrain or restore it") from None


class RunDir:
    """A run directory on disk: the name of every file in it, and a reader and writer for those stages share.

    A folder is a run when it holds config.yaml and best.pt or last.pt (:meth:`is_run_dir`)."""

    CONFIG = "config.yaml"
    CLASSES = "classes.json"
    BEST = "best.pt"
    LAST = "last.pt"
    METRICS = "metrics.json"
    SPLIT = "split.json"
    CURVES = "curves.png"
    CONFUSION = "confusion_matrix.png"
    RELIABILITY = "reliability.png"
    REPORT = "report.html"
    EVALUATION = "evaluation.json"  # metrics + calibration of a report (the run's, or an eval-SPLIT folder's)
    LOGS = "logs"  # experiment loggers' folder
    LR_FIND_PLOT = "lr_find.png"  # --lr auto (and imgcls lr-find --out)
    LR_FIND_RESULT = "lr_find.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @classmethod
    def create(cls, out: str | Path, name: str) -> RunDir:
        """A new, empty run directory ``out/name``; ``name-2``, ``name-3``... if taken."""
        out = Path(out)
        for index in range(1, 10_000):
            candidate = out / (name if index == 1 else f"{name}-{index}")
            try:
                candidate.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunDirError(f"cannot create the run directory {candidate}: {exc.strerror}; "
                                  f"choose another --out") from None
            return cls(candidate)
        raise RunDirError(f"too many runs named {name!r} in {out}; choose another --name")

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (:meth:`is_run_dir`); :class:`RunDirError` saying what is missing."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"run directory not found: {run.path}; give the folder `imgcls train` printed")
        if not (run.file(cls.BEST).is_file() or run.file(cls.LAST).is_file()):
            raise RunDirError(f"{run.path} holds no best.pt or last.pt; it is not a finished imgcls run")
        if not run.file(cls.CONFIG).is_file():
            raise RunDirError(f"{run.path} holds no {cls.CONFIG}; it is not an imgcls run directory")
        return run

    @classmethod
    def of(cls, path: str | Path) -> RunDir | None:
        """The run ``path`` belongs to: the run directory itself, or the one holding the file (runs/NAME/best.pt)."""
        path = Path(path)
        for candidate in (path, path.parent):
            if cls.is_run_dir(candidate):
                return cls(candidate)
        return None

    @staticmethod
    def is_run_dir(path: str | Path) -> bool:
        path = Path(path)
        return path.is_dir() and (path / RunDir.CONFIG).is_file() and (
            (path / RunDir.BEST).is_file() or (path / RunDir.LAST).is_file())

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def best_checkpoint(self) -> Path:
        """best.pt, or last.pt when no epoch finished validation yet."""
        best = self.file(self.BEST)
        return best if best.is_file() else self.file(self.LAST)

    # config.yaml -----------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.file(self.CONFIG), yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict[str, Any]:
        path = self.file(self.CONFIG)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "problem", None) or type(exc).__name__
            raise RunDirError(f"cannot read {path} ({reason}); the run directory is damaged: restore the file "
                              f"or retrain") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise RunDirError(f"{path} is not a mapping of settings; the run directory is damaged: restore the "
                              f"file or retrain")
        return loaded or {}

    # classes.json ----------------------------------------------------------------------------
    def write_classes(self, classes: list[str]) -> None:
        write_json(self.file(self.CLASSES), list(classes))

    def read_classes(self) -> list[str]:
        return list(read_json(self.file(self.CLASSES)))

    # metrics.json ----------------------------------------------------------------------------
    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.file(self.METRICS), metrics)

    def read_metrics(self) -> dict[str, Any]:
        path = self.file(self.METRICS)
        if not path.is_file():
            return {"best_val_acc": None, "best_epoch": None, "wall_seconds": None, "epochs": []}
        return read_json(path)

    # split.json ------------------------------------------------------------------------------
    def write_split(self, split: dict[str, Any]) -> None:
        write_json(self.file(self.SPLIT), split)

    def read_split(self) -> dict[str, Any] | None:
        path = self.file(self.SPLIT)
        return read_json(path) if path.is_file() else None
