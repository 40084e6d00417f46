"""``imgcls export``: a run's best model -> an ONNX, TorchScript or OpenVINO file (or a Hugging Face
folder, see hf_export), verified before it is kept.

The exported file is written under a temporary name, loaded back through the same Predictor that
predict/evaluate/serve use, and compared with the PyTorch model on the run's validation images
(random inputs when the data is gone). Only a file that passes takes the final name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcls.data.source import DataSource
from imgcls.errors import DataError, ExportError
from imgcls.export.hf_export import export_hf
from imgcls.export.parity import ExportResult, Parity, Reference, calibration_batches, check_inputs
from imgcls.inference.predictor import Predictor, resolve_model_path
from imgcls.models.checkpoint import load_checkpoint
from imgcls.models.metadata import ExportMeta
from imgcls.models.ood import deployed, public_ood
from imgcls.rundir import refused_writes
from imgcls.version import __version__

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".ts", "openvino": ".xml", "hf": ""}  # hf: a folder
FORMAT_ALIASES = {"ts": "torchscript", "jit": "torchscript", "ov": "openvino", "huggingface": "hf",
                  "transformers": "hf"}
DEFAULT_TOLERANCE = {"hf": 0.02}
QUANTIZATIONS = ("int8",)
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
TASK_KEYS = ("task", "thresholds", "thresholds_from")  # how a multi-label model's scores become labels


def normalize_format(fmt: str) -> str:
    name = FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use --format onnx, torchscript, openvino or hf")
    return name


def output_path(checkpoint: Path, fmt: str, quantize: str | None, out: str | Path | None) -> Path:
    """``--out`` (a file, or a folder to put one in), else beside the checkpoint: best.onnx, best.int8.onnx, best.ts."""
    suffix = FORMATS[fmt]
    name = checkpoint.stem + (f".{quantize}" if quantize else "") + suffix
    if out is None:
        return checkpoint.with_name(name)
    out = Path(out).expanduser()
    if out.is_dir():
        return out / name
    if out.suffix.lower() != suffix:
        raise ExportError(f"--out {out} must end in {suffix} for --format {fmt} (or name an existing folder)")
    return out


def _source_checkpoint(model: str | Path) -> Path:
    path = resolve_model_path(model)
    if path.suffix.lower() not in TORCH_SUFFIXES:
        raise ExportError(f"{path} is already an exported model; export from a run directory or its best.pt")
    return path


def _check_data(model_path: Path, data: str | None) -> DataSource | None:
    """The data to check against: --data, else the run's own; without either, None (random inputs)."""
    from imgcls.data.source import data_for

    try:
        return data_for(model_path, data)
    except DataError as exc:
        if data is not None:
            raise
        log.warning("the run's data is not available (%s); checking on random inputs", exc)
        return None


def _files(path: Path) -> list[Path]:
    """An export's files: OpenVINO's .xml graph comes with its .bin weights."""
    from imgcls.export.to_openvino import weights_file

    return [weights_file(path), path] if path.suffix.lower() == ".xml" else [path]


def _write_and_verify(network, meta: ExportMeta, fmt: str, tmp: Path, reference: Reference) -> Parity:  # noqa: ANN001
    if fmt == "onnx":
        from imgcls.export.to_onnx import export_onnx

        export_onnx(network, meta, tmp)
    elif fmt == "openvino":
        from imgcls.export.to_openvino import export_openvino

        export_openvino(network, meta, tmp)
    else:
        from imgcls.export.to_torchscript import export_torchscript

        export_torchscript(network, meta, tmp)
    return reference.compare(Predictor.load(tmp))


def export_model(model: str | Path, fmt: str = "onnx", quantize: str | None = None, out: str | Path | None = None,
                 data: str | None = None, tolerance: float | None = None, max_accuracy_drop: float = 0.05,
                 check_limit: int = 1000) -> ExportResult:
    """Export the model of a run or checkpoint; :class:`ExportError` when it does not match PyTorch.
    ``tolerance`` (largest difference of probabilities) defaults to 1e-3, 0.02 for ``hf`` folders, whose
    images go through transformers' own preprocessing."""
    started = time.perf_counter()
    fmt = normalize_format(fmt)
    tolerance = DEFAULT_TOLERANCE.get(fmt, 1e-3) if tolerance is None else tolerance
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; use --quantize int8")
    if quantize and fmt != "onnx":
        raise ExportError("--quantize int8 works with --format onnx (onnxruntime quantization)")
    checkpoint_path = _source_checkpoint(model)
    if fmt == "hf":
        return export_hf(checkpoint_path, out, _check_data(checkpoint_path, data), tolerance, check_limit)
    target = output_path(checkpoint_path, fmt, quantize, out)
    with refused_writes(target):
        target.parent.mkdir(parents=True, exist_ok=True)

    checkpoint = load_checkpoint(checkpoint_path)
    meta = ExportMeta(checkpoint.classes, checkpoint.preprocess, checkpoint.spec.to_dict(),
                      {"exported_format": fmt, "quantization": quantize or "none", "source": str(checkpoint_path),
                       "epoch": checkpoint.info.get("epoch"), "imgcls_version": __version__,
                       **{key: checkpoint.info[key] for key in TASK_KEYS if key in checkpoint.info},
                       **({"calibration": checkpoint.info["calibration"]} if checkpoint.info.get("calibration") else {}),
                       **({"ood": public_ood(checkpoint.info["ood"])} if checkpoint.info.get("ood") else {})})
    reference_predictor = Predictor.load(checkpoint_path)
    source = _check_data(checkpoint_path, data)
    inputs = check_inputs(reference_predictor, source, limit=check_limit)
    reference = Reference(reference_predictor, inputs)

    log.info("exporting %s to %s, then checking it against PyTorch on %s", checkpoint_path, fmt, inputs.description)
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
    int8_tmp = target.with_name(f".{target.stem}.quantized-tmp{target.suffix}")
    try:
        with refused_writes(target):  # a full or read-only disk: one line naming the file
            # The graph divides the logits by the temperature and outputs the OOD score: files run as best.pt does.
            parity = _write_and_verify(deployed(checkpoint.build(), checkpoint.info), meta, fmt, tmp, reference)
        if not parity.max_abs_diff <= tolerance:  # NaN fails too
            raise ExportError(f"the {fmt} export does not match PyTorch: probabilities differ by up to "
                              f"{parity.max_abs_diff:.2g} (tolerance {tolerance:g}) on {inputs.description}; "
                              f"try the other --format, or raise --tolerance if this is acceptable")
        int8 = None
        if quantize:
            with refused_writes(target):
                int8 = _quantize(tmp, int8_tmp, meta, reference_predictor, source, reference, max_accuracy_drop)
        for made, final in zip(_files(int8_tmp if quantize else tmp), _files(target)):
            made.replace(final)
    finally:
        for leftover in (*_files(tmp), int8_tmp):
            leftover.unlink(missing_ok=True)
    return ExportResult(target, fmt, quantize, sum(f.stat().st_size for f in _files(target)),
                        time.perf_counter() - started,
                        inputs.description, tolerance, parity, int8, str(checkpoint_path))


def _quantize(float_model: Path, out: Path, meta: ExportMeta, predictor: Predictor, source: DataSource | None,
              reference: Reference, max_accuracy_drop: float) -> Parity:
    from imgcls.export.quantize import quantize_int8
    from imgcls.export.to_onnx import write_onnx_metadata

    calibration = calibration_batches(predictor, source)
    if not calibration:
        raise ExportError("int8 quantization calibrates on the run's training images, which are not available; "
                          "pass --data DIR (a folder with train/ and val/, or of class folders)")
    log.info("int8: calibrating on %d training images", sum(len(b) for b in calibration))
    quantize_int8(float_model, out, calibration)
    write_onnx_metadata(out, meta)
    parity = reference.compare(Predictor.load(out))
    if parity.accuracy is not None and parity.reference_accuracy - parity.accuracy > max_accuracy_drop:
        raise ExportError(f"int8 quantization costs too much accuracy: {parity.reference_accuracy:.4f} -> "
                          f"{parity.accuracy:.4f} on {reference.inputs.description} (allowed drop "
                          f"{max_accuracy_drop:g}); export without --quantize")
    return parity
