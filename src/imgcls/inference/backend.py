"""How the Predictor runs a network: the :class:`Backend` contract, the PyTorch backend and the registry of
model-file suffixes. The ONNX and TorchScript backends (onnx_backend.py, torchscript_backend.py) implement the
same contract; the Predictor only ever talks to a :class:`Backend`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from imgcls.data.presets import Preprocess
from imgcls.models.checkpoint import load_checkpoint
from imgcls.models.chunked import forward_in_slices
from imgcls.models.ood import deployed


class Backend(Protocol):
    """Logits (N, classes) on the CPU for a preprocessed float batch (N, 3, H, W); models with OOD data
    (calibrated ones) return (logits, ood_score (N,)) instead -- see :func:`imgcls.models.ood.split_outputs`."""

    name: str  # torch, torchscript, onnx...: what /health and the logs report

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

    def per_core(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A single-threaded forward pass that one Python thread per core may call at once (folders on a CPU:
        each core decodes and runs its own slices), or None where the backend cannot offer one."""


class TorchBackend:
    """A PyTorch network (an imgcls checkpoint's, or a TorchScript module)."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", name: str = "torch"):
        self.name = name
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor):  # noqa: ANN204 - logits, or (logits, ood_score)
        batch = batch.to(self.device, non_blocking=True)
        if self.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        outputs = forward_in_slices(self.model, batch, self.device.type == "cpu")
        if isinstance(outputs, (tuple, list)):
            return tuple(o.float().cpu() for o in outputs)
        return outputs.float().cpu()

    def per_core(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """This forward pass, to be called from one thread per core at once (CPU only; see
        :meth:`Predictor._iter_per_core`). A module in eval mode under inference mode is safe to share."""
        return self if self.device.type == "cpu" else None


@dataclass
class LoadedModel:
    backend: Backend
    classes: list[str]
    preprocess: Preprocess
    info: dict[str, Any] = field(default_factory=dict)


def load_torch(path: Path, device: str = "cpu") -> LoadedModel:
    checkpoint = load_checkpoint(path)
    # A calibrated model's network divides its logits by the temperature and adds the OOD score as a second output.
    return LoadedModel(TorchBackend(deployed(checkpoint.build(), checkpoint.info), device), checkpoint.classes,
                       checkpoint.preprocess, {"arch": checkpoint.spec.arch, "model": checkpoint.spec.name, **checkpoint.info})


# Suffix -> (module, loader). A backend's module, and its runtime (onnxruntime...), is imported when a file
# of its kind is loaded; named here rather than imported, since those modules import this one.
BACKENDS: dict[str, tuple[str, str]] = {
    ".pt": (__name__, "load_torch"), ".pth": (__name__, "load_torch"), ".ckpt": (__name__, "load_torch"),
    ".onnx": ("imgcls.inference.onnx_backend", "load_onnx"),
    ".ts": ("imgcls.inference.torchscript_backend", "load_torchscript"),
    ".xml": ("imgcls.inference.openvino_backend", "load_openvino"),
}


def load_model_file(path: Path, device: str = "cpu") -> LoadedModel:
    """The network, classes and preprocessing of a model file whose suffix :data:`BACKENDS` knows."""
    module, loader = BACKENDS[path.suffix.lower()]
    return getattr(importlib.import_module(module), loader)(path, device)
