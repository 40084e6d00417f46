"""int8 ONNX models with onnxruntime's static quantization.

Static QDQ quantization with per-channel weights: dynamic quantization leaves a CNN's activations
in float and its convolutions barely faster, and per-tensor weights cost accuracy in depthwise
convolutions. Activation ranges are calibrated on the run's own training images.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from imgcls.errors import ExportError, first_line
from imgcls.models.metadata import INPUT_NAME

log = logging.getLogger(__name__)


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over preprocessed image batches."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self.batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_int8(float_model: Path, out: Path, calibration: list[np.ndarray]) -> None:
    """Write the int8 version of ``float_model`` to ``out``, calibrated on ``calibration`` batches."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ExportError("int8 quantization needs calibration images and found none; "
                          "pass --data DIR with the training images")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # Folds constants and fills in shapes so every convolution gets quantized.
            quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=False)
        except Exception as exc:  # noqa: BLE001 - best effort: quantization works without it, less well
            log.warning("int8: shape pre-processing failed (%s); quantizing the model as exported", exc)
            prepared = float_model
        try:
            quantize_static(str(prepared), str(out), _Batches(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ExportError(f"int8 quantization failed ({type(exc).__name__}: {first_line(exc)}); "
                              f"export without --quantize") from None
