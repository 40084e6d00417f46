"""PyTorch network -> frozen TorchScript ``.ts`` file with the imgcls metadata as an extra file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from imgcls.errors import ExportError, first_line
from imgcls.inference.torchscript_backend import quiet_jit
from imgcls.models.metadata import TORCHSCRIPT_EXTRA, ExportMeta


def export_torchscript(model: nn.Module, meta: ExportMeta, path: Path) -> None:
    """Traced (timm nets trace reliably, many do not script), then frozen: weights become constants
    and batch norm folds into the convolutions. The parity check afterwards runs another batch size,
    which catches a trace that baked the example's shape in."""
    size = meta.preprocess.img_size
    example = torch.randn(2, 3, size, size)
    try:
        with quiet_jit(), torch.no_grad():
            traced = torch.jit.trace(model.eval(), example, check_trace=False)
            frozen = torch.jit.freeze(traced)
            torch.jit.save(frozen, str(path), _extra_files={TORCHSCRIPT_EXTRA: meta.to_json()})
    except Exception as exc:  # noqa: BLE001 - tracing raises many error types
        raise ExportError(f"{meta.model.get('arch')} could not be exported to TorchScript "
                          f"({type(exc).__name__}: {first_line(exc)}); try --format onnx") from None
