"""User mistakes, as one family of exceptions.

Anything raised as an :class:`ImgclsError` is something the user can fix: the CLI prints its one-line
message and exits 2, the server answers 4xx. Every other exception is a bug (exit 1, traceback).
Messages name the thing that is wrong and say how to fix it.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable


class ImgclsError(Exception):
    """A mistake the user can fix; the message says what and how."""

    exit_code = 2


class ConfigError(ImgclsError):
    """A bad flag value, a malformed or unknown config key."""


class DataError(ImgclsError):
    """A missing, empty or unusable data folder or image."""


class ModelError(ImgclsError):
    """An unknown model name or unusable pretrained weights."""


class CheckpointError(ImgclsError):
    """A file that is not an imgcls checkpoint, is corrupt, or would run code when loaded."""


def model_not_found(path: object) -> CheckpointError:
    return CheckpointError(f"model not found: {path}; give a run directory, a .pt checkpoint, "
                           f"an exported .onnx, TorchScript .ts or OpenVINO .xml file")


class RunDirError(ImgclsError):
    """A path that is not a usable run directory."""


class ExportError(ImgclsError):
    """An export that cannot be made or does not match PyTorch."""


class TrainingInterrupted(ImgclsError):
    """Training stopped by Ctrl-C; last.pt holds the state to resume from."""

    exit_code = 130


class TrainingTerminated(TrainingInterrupted):
    """Training stopped by SIGTERM (a scheduler's preemption); last.pt holds the step reached."""

    exit_code = 143


class StorageError(ImgclsError, OSError):
    """A write refused by the disk: no space, over quota, read-only, or no permission.

    An :class:`OSError` too, so code that tolerates a failed optional write (a cache) still catches it.
    """

    def __init__(self, message: str, code: int | None = None):
        OSError.__init__(self, code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# The write failures a user fixes (free space, another disk, permissions), as the words that say so.
_WRITE_PROBLEMS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "operation not permitted"}


def storage_error(exc: BaseException, path: str | os.PathLike | None = None,
                  fix: str = "use --out on another disk") -> StorageError | None:
    """The one-line error for a write that the disk refused, naming the file; None for other failures."""
    if isinstance(exc, StorageError):
        return exc
    if not isinstance(exc, OSError) or exc.errno not in _WRITE_PROBLEMS:
        return None
    where = path or exc.filename
    problem = _WRITE_PROBLEMS[exc.errno]
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space or {fix}"
    target = f" writing {os.fspath(where)}" if where else " writing files"
    return StorageError(f"{problem}{target}; {fix}", exc.errno)


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean a, b?)' for the nearest choices, or '' when none is near."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(matches)}?)" if matches else ""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
