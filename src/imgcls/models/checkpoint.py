"""imgcls checkpoints: Lightning checkpoints with an ``"imgcls"`` entry of plain metadata.

The entry holds everything needed to use the model without the data (architecture and its
arguments, class names, preprocessing). The whole file loads with ``torch.load(weights_only=True)``:
a file that would need to run code is refused, never unpickled.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data.presets import Preprocess
from imgcls.errors import CheckpointError, ImgclsError, first_line
from imgcls.models.factory import ModelSpec, build_model
from imgcls.models.metadata import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from imgcls.models.safe_load import safe_torch_load
from imgcls.rundir import atomic_write_bytes

MODULE_PREFIX = "model."  # ClassifierModule keeps the network as self.model


def update_checkpoint_meta(path: str | Path, **entries: Any) -> None:
    """Add ``entries`` (plain data and tensors) to the imgcls metadata of the checkpoint at ``path``, atomically."""
    checkpoint = read_checkpoint_file(path)
    checkpoint[CHECKPOINT_FORMAT].update(entries)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely; :class:`CheckpointError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; give a run directory or its best.pt")
    checkpoint = safe_torch_load(path, CheckpointError, "use best.pt or last.pt of an imgcls run, or retrain")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(CHECKPOINT_FORMAT), dict):
        raise CheckpointError(f"{path} is not an imgcls checkpoint (no imgcls metadata inside); "
                              f"to start from plain weights use `imgcls train --weights {path}`")
    meta = checkpoint[CHECKPOINT_FORMAT]
    version = meta.get("version", 0)
    if meta.get("format") != CHECKPOINT_FORMAT or not isinstance(version, int):
        raise CheckpointError(f"{path}: its imgcls metadata is damaged (format {meta.get('format')!r}, "
                              f"version {version!r}); use best.pt or last.pt of an imgcls run, or retrain")
    if version > CHECKPOINT_VERSION:
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
        try:
            model = build_model(self.spec)
        except ImgclsError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign spec fails inside timm in many ways
            raise CheckpointError(f"{self.path}: cannot build its network '{self.spec.arch}' "
                                  f"({first_line(exc, 160)}); the checkpoint is damaged or comes "
                                  f"from a newer imgcls or timm") from None
        try:
            model.load_state_dict(self.state_dict)
        except (RuntimeError, TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{self.path}: weights do not fit {self.spec.arch} "
                                  f"({first_line(exc)}); the checkpoint is damaged") from None
        return model.eval()


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    checkpoint = read_checkpoint_file(path)
    meta = checkpoint[CHECKPOINT_FORMAT]
    try:
        spec = ModelSpec.from_dict(meta["model"])
        classes = [str(c) for c in meta["classes"]]
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: imgcls metadata is incomplete ({exc}); the checkpoint is damaged") from None
    state = {k[len(MODULE_PREFIX):]: v for k, v in checkpoint["state_dict"].items()
             if isinstance(k, str) and k.startswith(MODULE_PREFIX)}
    info = {k: v for k, v in meta.items() if k not in {"format", "version", "model", "classes", "preprocess"}}
    info.setdefault("epoch", checkpoint.get("epoch"))
    return LoadedCheckpoint(Path(path), spec, classes, preprocess, state, info)
