"""imgcls checkpoints: Lightning checkpoints with an ``"imgcls"`` entry of plain metadata.

The entry holds everything needed to use the model without the data (architecture and its
arguments, class names, preprocessing). The whole file loads with ``torch.load(weights_only=True)``:
a file that would need to run code is refused, never unpickled.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data.presets import Preprocess
from imgcls.errors import CheckpointError
from imgcls.models.factory import ModelSpec, build_model

FORMAT = "imgcls"
VERSION = 1
MODULE_PREFIX = "model."  # ClassifierModule keeps the network as self.model


def checkpoint_meta(spec: ModelSpec, classes: list[str], preprocess: Preprocess, **extra: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "model": spec.to_dict(), "classes": list(classes),
            "preprocess": preprocess.to_dict(), **extra}


def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely; :class:`CheckpointError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; give a run directory or its best.pt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"refusing to load {path}: it would run code or build arbitrary objects when loaded "
                              f"({reason}); imgcls checkpoints hold only tensors and plain data, "
                              f"so this file is not one of ours -- do not load it") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is corrupt or not a PyTorch checkpoint ({str(exc).splitlines()[0][:160]}); "
                              f"use another checkpoint (last.pt/best.pt) or retrain") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(FORMAT), dict):
        raise CheckpointError(f"{path} is not an imgcls checkpoint (no imgcls metadata inside); "
                              f"to start from plain weights use `imgcls train --weights {path}`")
    meta = checkpoint[FORMAT]
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path} was written by a newer imgcls (checkpoint version {meta.get('version')}); "
                              f"upgrade imgcls to load it")
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} holds no model weights; use best.pt or last.pt of a run")
    return checkpoint


@dataclass
class LoadedCheckpoint:
    path: Path
    spec: ModelSpec
    classes: list[str]
    preprocess: Preprocess
    state_dict: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """The network with the checkpoint's weights, in eval mode."""
        model = build_model(self.spec)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.path}: weights do not fit {self.spec.arch} "
                                  f"({str(exc).splitlines()[0]}); the checkpoint is damaged") from None
        return model.eval()


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    checkpoint = read_checkpoint_file(path)
    meta = checkpoint[FORMAT]
    try:
        spec = ModelSpec.from_dict(meta["model"])
        classes = [str(c) for c in meta["classes"]]
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: imgcls metadata is incomplete ({exc}); the checkpoint is damaged") from None
    state = {k[len(MODULE_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(MODULE_PREFIX)}
    info = {k: v for k, v in meta.items() if k not in {"format", "version", "model", "classes", "preprocess"}}
    info.setdefault("epoch", checkpoint.get("epoch"))
    return LoadedCheckpoint(Path(path), spec, classes, preprocess, state, info)
