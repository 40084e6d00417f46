"""Embeddings of many images on a CPU through onnxruntime: the same numbers as the network's, about 3x sooner.

Extracting features runs a fixed network over every image once and nothing trains, which is what onnxruntime
is for: efficientnet_lite0 at 224 px takes 16-18 ms per image on one core there, 45-60 ms in PyTorch's eager
forward (2 cores, AVX2; channels_last, in slices). The network without its classifier is exported to memory
with torch.onnx (its TorchScript-based exporter: about a second, where the torch.export-based one took 18 s),
checked against PyTorch on two images, and run with one single-threaded session shared by one thread per core.
That set-up costs 2-3 s, so it is used from ``MIN_IMAGES`` images on, and the last one made is kept for the next
split of the same unchanged network. A network that does not export, or whose export disagrees, is run by
PyTorch as before; on a GPU PyTorch always runs.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from imgcls.models.chunked import CPU_SLICE
from imgcls.models.factory import embed
from imgcls.runtime import usable_cpus

log = logging.getLogger(__name__)

MIN_IMAGES = 128  # fewer: the export and session take longer than onnxruntime saves
_kept: tuple[tuple, OnnxEmbedder | None] | None = None  # ((network, (input size, weights' versions)), embedder)


class OnnxEmbedder:
    """``embed(model, batch)`` for float image batches (N, 3, H, W), by onnxruntime: slices of 8, one thread per
    core, each running the one single-threaded session (its runs release the GIL). ``close()`` ends the threads
    (the next call starts them again)."""

    def __init__(self, session):  # noqa: ANN001 - onnxruntime.InferenceSession
        from imgcls.inference.onnx_backend import OnnxBackend

        self.backend = OnnxBackend(session)  # what predict and serve run: one slice of 8 in one session.run
        self.pool: ThreadPoolExecutor | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=usable_cpus(), thread_name_prefix="imgcls-embed")
        return torch.cat(list(self.pool.map(self.backend, batch.split(CPU_SLICE))))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None


def embedder_for(model: nn.Module, probe: torch.Tensor) -> OnnxEmbedder | None:
    """:func:`onnx_embedder`, made once per network, input size and state: any in-place change of a weight (a
    training step, ``load_state_dict``) bumps its version and makes a new one."""
    global _kept
    try:
        state = (tuple(probe.shape[1:]), tuple(t._version for t in model.state_dict().values()))
    except RuntimeError:  # inference tensors keep no version: nothing can tell a change, so nothing is kept
        return onnx_embedder(model, probe)
    # the network itself by weak reference: another one made later at the same address is not it
    if _kept is None or _kept[0][0]() is not model or _kept[0][1] != state:
        _kept = ((weakref.ref(model), state), onnx_embedder(model, probe))
    return _kept[1]


def onnx_embedder(model: nn.Module, probe: torch.Tensor) -> OnnxEmbedder | None:
    """The embedder of ``model`` for batches at ``probe``'s size (float, normalised); None where the network does
    not export or its export does not give PyTorch's embeddings on ``probe``."""
    try:
        import onnxruntime as ort

        from imgcls.inference.onnx_backend import session_options

        headless = copy.deepcopy(model).float().eval()
        headless.reset_classifier(0)  # timm's interface: the pooled pre-logit features are then the output
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice and its tracer's warnings
            torch.onnx.export(headless, (probe[:2].float().contiguous(),), buffer, dynamo=False,
                              input_names=["images"], output_names=["embeddings"], opset_version=17,
                              dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}})
        session = ort.InferenceSession(buffer.getvalue(), sess_options=session_options(1),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any exporter or runtime failure means: PyTorch runs instead
        log.debug("no onnxruntime embeddings for %s (%s: %s)", type(model).__name__, type(exc).__name__, exc)
        return None
    embedder = OnnxEmbedder(session)
    with torch.inference_mode():
        expected = embed(model.eval(), probe[:2].float())
    got = embedder(probe[:2])
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-4, rtol=1e-3):
        log.debug("onnxruntime embeddings of %s differ from PyTorch's; PyTorch runs", type(model).__name__)
        embedder.close()
        return None
    return embedder
