"""Inference in small slices on CPU.

oneDNN's convolutions run about twice as fast per image on batches of 4-8 as on batches of 32 or more
(efficientnet_lite0 at 224 px, 2 cores: 13.5-15 ms against 28.6 ms per image; onnxruntime 6.2 against
7.9 ms): a small batch's activations stay in the L2 cache. Loaders keep their batch size, for decoding
and collation; only the forward pass takes the batch in slices. Training steps are left whole, since
BatchNorm there depends on the batch. On a GPU, bigger is better and nothing is sliced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

CPU_SLICE = 8


def forward_in_slices(forward: Callable[[torch.Tensor], Any], batch: torch.Tensor, on_cpu: bool) -> Any:
    """``forward(batch)``, computed slice by slice on CPU (outputs concatenated: the same result). A forward
    pass with several outputs (logits and OOD scores) has each concatenated on its own."""
    if not on_cpu or len(batch) <= CPU_SLICE:
        return forward(batch)
    parts = [forward(part) for part in batch.split(CPU_SLICE)]
    if isinstance(parts[0], (tuple, list)):
        return tuple(torch.cat(outputs) for outputs in zip(*parts))
    return torch.cat(parts)
