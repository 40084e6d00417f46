"""User mistakes, as one family of exceptions.

Anything raised as an :class:`ImgclsError` is something the user can fix: the CLI prints its one-line
message and exits 2, the server answers 4xx. Every other exception is a bug (exit 1, traceback).
Messages name the thing that is wrong and say how to fix it.
"""

from __future__ import annotations

import difflib
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


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean a, b?)' for the nearest choices, or '' when none is near."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(matches)}?)" if matches else ""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
