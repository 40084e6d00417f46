"""The TorchScript backend for exported ``.ts`` files: no Python model code needed to run them."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from imgcls.errors import CheckpointError, first_line
from imgcls.inference.backend import LoadedModel, TorchBackend
from imgcls.models.metadata import TORCHSCRIPT_EXTRA, ExportMeta


@contextmanager
def quiet_jit() -> Iterator[None]:
    """torch marks torch.jit deprecated; the .ts format is still what users deploy, so say nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def load_torchscript(path: Path, device: str = "cpu") -> LoadedModel:
    extra = {TORCHSCRIPT_EXTRA: ""}
    try:
        with quiet_jit():
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a usable TorchScript model ({first_line(exc)}); "
                              f"export it again with "
                              f"`imgcls export RUN --format torchscript`") from None
    meta = ExportMeta.from_json(extra[TORCHSCRIPT_EXTRA], path)
    return LoadedModel(TorchBackend(module, device, name="torchscript"), meta.classes, meta.preprocess, meta.info_for_predictor())
