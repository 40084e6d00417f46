"""The OpenVINO backend for exported ``.xml`` files (OpenVINO IR, weights in the ``.bin`` beside it)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.errors import CheckpointError
from imgcls.export.metadata import META_KEY, ExportMeta
from imgcls.models.chunked import forward_in_slices
from imgcls.runtime import usable_cpus

log = logging.getLogger(__name__)

FIX = "export it again with `imgcls export RUN --format openvino`"


def compile_options(threads: int | None) -> dict[str, Any]:
    # f32 explicitly: on CPUs with bf16 units OpenVINO would otherwise run in bf16 and drift from PyTorch.
    return {"INFERENCE_NUM_THREADS": threads or usable_cpus(), "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY"}


class OpenVinoBackend:
    """Logits from an OpenVINO compiled model, for preprocessed float batches (N, 3, H, W)."""

    name = "openvino"

    def __init__(self, core, model, device: str):  # noqa: ANN001 - openvino.Core, openvino.Model
        self.core, self.model, self.device = core, model, device
        self.compiled = core.compile_model(model, device, compile_options(None))
        self.on_cpu = device == "CPU"
        self._single_threaded = None
        self._local = threading.local()  # an infer request serves one thread at a time

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return forward_in_slices(lambda part: self._run(self.compiled, part), batch, self.on_cpu)

    def _run(self, compiled, batch: torch.Tensor):  # noqa: ANN001, ANN202 - a tensor, or a tuple of them
        requests = self._local.__dict__.setdefault("requests", {})
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        results = request.infer({0: array})
        outputs = tuple(torch.from_numpy(np.array(results[i])) for i in range(len(results)))
        return outputs[0] if len(outputs) == 1 else outputs  # (logits, ood_score) for models that have one

    def per_core(self):  # noqa: ANN201 - Callable[[Tensor], Tensor] | None
        """A single-threaded forward pass, to be called from one Python thread per core at once (as the
        ONNX backend's: each core decodes and runs its own slices)."""
        if not self.on_cpu:
            return None
        if self._single_threaded is None:
            self._single_threaded = self.core.compile_model(self.model, self.device, compile_options(1))
        return lambda batch: self._run(self._single_threaded, batch)


def _reason(exc: Exception) -> str:
    """OpenVINO's message without the C++ source locations it starts with."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0][:200]


def _device(core, device: str) -> str:  # noqa: ANN001 - openvino.Core
    if not str(device).lower().startswith(("cuda", "gpu")):
        return "CPU"
    if "GPU" in core.available_devices:
        return "GPU"
    log.warning("OpenVINO sees no GPU here; running on CPU")
    return "CPU"


def load_openvino(path: Path, device: str = "cpu"):  # noqa: ANN201 - LoadedModel
    import openvino as ov

    from imgcls.inference.predictor import LoadedModel

    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise CheckpointError(f"{path}: its weights file {weights.name} is missing beside it; "
                              f"keep the .xml and .bin together, or {FIX}")
    with open(path, "rb") as file:
        head = file.read(4096)
    if b"<net" not in head:  # checked first: OpenVINO would try every frontend on it, logging to stderr
        raise CheckpointError(f"{path} is not an OpenVINO model (no <net> IR graph inside); give an .xml written by "
                              f"`imgcls export RUN --format openvino`")
    core = ov.Core()
    try:
        model = core.read_model(str(path), str(weights))
        text = model.get_rt_info([META_KEY]).astype(str) if model.has_rt_info([META_KEY]) else None
        backend = OpenVinoBackend(core, model, _device(core, device))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped errors
        raise CheckpointError(f"{path} is not a usable OpenVINO model ({_reason(exc)}); {FIX}") from None
    meta = ExportMeta.from_json(text, path)
    return LoadedModel(backend, meta.classes, meta.preprocess, meta.info_for_predictor())
