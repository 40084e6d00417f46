"""The onnxruntime backend: the fast CPU path for exported ``.onnx`` files (float or int8)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from imgcls.errors import CheckpointError, first_line
from imgcls.inference.backend import LoadedModel
from imgcls.models.chunked import forward_in_slices
from imgcls.models.metadata import META_KEY, ExportMeta
from imgcls.runtime import usable_cpus

log = logging.getLogger(__name__)


def session_options(threads: int | None = None):  # noqa: ANN201 - onnxruntime.SessionOptions
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # a CNN is a chain: parallelism is within ops
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores the image-decoding workers need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only; its warnings are about graph internals
    return options


def providers_for(device: str) -> list[str]:
    import onnxruntime as ort

    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        log.warning("onnxruntime has no CUDA provider here (install onnxruntime-gpu); running on CPU")
    return ["CPUExecutionProvider"]


class OnnxBackend:
    """Logits from an onnxruntime session, for preprocessed float batches (N, 3, H, W)."""

    name = "onnx"

    def __init__(self, session, path: Path | None = None):  # noqa: ANN001 - onnxruntime.InferenceSession
        self.session, self.path = session, path
        self.input_name = session.get_inputs()[0].name
        self.on_cpu = session.get_providers()[0] == "CPUExecutionProvider"
        self._single_threaded = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return forward_in_slices(lambda part: self._run(self.session, part), batch, self.on_cpu)

    def _run(self, session, batch: torch.Tensor):  # noqa: ANN001, ANN202 - logits, or (logits, ood_score)
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        outputs = [torch.from_numpy(o) for o in session.run(None, {self.input_name: array})]
        return tuple(outputs) if len(outputs) > 1 else outputs[0]

    def per_core(self):  # noqa: ANN201 - Callable[[Tensor], Tensor] | None
        """A forward pass on one thread, safe to call from one Python thread per core at once (CPU only).

        For folders: each core decodes and runs its own small batches, so no core waits for another
        inside an operator. On 2 cores that is 98-100 images/s against 80 for one two-thread session
        fed by a decoding process, which takes a core away from the session's threads mid-operator."""
        import onnxruntime as ort

        if not self.on_cpu or self.path is None:
            return None
        if self._single_threaded is None:
            self._single_threaded = ort.InferenceSession(str(self.path), sess_options=session_options(1),
                                                         providers=["CPUExecutionProvider"])
        return lambda batch: self._run(self._single_threaded, batch)


def load_onnx(path: Path, device: str = "cpu", threads: int | None = None) -> LoadedModel:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                       providers=providers_for(device))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise CheckpointError(f"{path} is not a usable ONNX model ({first_line(exc)}); "
                              f"export it again with "
                              f"`imgcls export RUN --format onnx`") from None
    meta = ExportMeta.from_json(session.get_modelmeta().custom_metadata_map.get(META_KEY), path)
    return LoadedModel(OnnxBackend(session, path), meta.classes, meta.preprocess, meta.info_for_predictor())
