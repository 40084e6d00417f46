"""PyTorch network -> ONNX file with a dynamic batch dimension and the imgcls metadata inside."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from imgcls.errors import ExportError, first_line
from imgcls.models.metadata import INPUT_NAME, META_KEY, OOD_OUTPUT_NAME, OUTPUT_NAME, ExportMeta
from imgcls.models.ood import DeployedNet

log = logging.getLogger(__name__)


def write_onnx_metadata(path: Path, meta: ExportMeta) -> None:
    """Set (or replace) the imgcls entry of an ONNX file's metadata_props, in place."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, META_KEY: meta.to_json()})
    onnx.save(model, str(path))


def export_onnx(model: nn.Module, meta: ExportMeta, path: Path) -> None:
    """torch.export-based ONNX export (``dynamo=True``); batch size is left free."""
    size = meta.preprocess.img_size
    example = torch.randn(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    outputs = [OUTPUT_NAME, OOD_OUTPUT_NAME] if isinstance(model, DeployedNet) else [OUTPUT_NAME]
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter internals, not the user's business
            program = torch.onnx.export(model.eval(), (example,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=outputs, dynamic_shapes=({0: batch},),
                                        external_data=False, verbose=False)
    except Exception as exc:  # noqa: BLE001 - torch.export raises many error types
        raise ExportError(f"{meta.model.get('arch')} could not be exported to ONNX "
                          f"({type(exc).__name__}: {first_line(exc)}); try --format torchscript") from None
    program.save(str(path))
    write_onnx_metadata(path, meta)
