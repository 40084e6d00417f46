"""PyTorch network -> OpenVINO IR (``.xml`` graph + ``.bin`` weights) with the imgcls metadata in its rt_info.

The graph goes through the ONNX export first: torch.export's ONNX graph is what imgcls already
checks for every model, and OpenVINO's ONNX frontend converts it without tracing the model again.
Weights stay float32 so the parity check holds to 1e-3 (OpenVINO would store them as float16 by default).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from imgcls.errors import ExportError, first_line
from imgcls.export.metadata import META_KEY, ExportMeta
from imgcls.export.to_onnx import export_onnx


def weights_file(xml: Path) -> Path:
    """The ``.bin`` OpenVINO reads beside an ``.xml`` (same stem)."""
    return xml.with_suffix(".bin")


def export_openvino(model: nn.Module, meta: ExportMeta, path: Path) -> None:
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".openvino-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, meta, onnx_path)
        try:
            converted = ov.convert_model(str(onnx_path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO's frontends raise their own untyped errors
            raise ExportError(f"{meta.model.get('arch')} could not be converted to OpenVINO "
                              f"({type(exc).__name__}: {first_line(exc)}); try --format onnx") from None
    converted.set_rt_info(meta.to_json(), [META_KEY])
    ov.save_model(converted, str(path), compress_to_fp16=False)
