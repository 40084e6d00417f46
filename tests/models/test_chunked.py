"""Slicing a CPU batch for speed must not change what the model answers."""

from __future__ import annotations

import torch

from imgcls.models.chunked import CPU_SLICE, forward_in_slices
from imgcls.models.scratch import small_cnn


def test_sliced_forward_equals_the_whole_batch():
    torch.manual_seed(0)
    model = small_cnn(num_classes=3).eval()
    batch = torch.randn(2 * CPU_SLICE + 3, 3, 32, 32)
    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return model(x)

    with torch.inference_mode():
        whole = model(batch)
        sliced = forward_in_slices(forward, batch, on_cpu=True)
        assert calls == [CPU_SLICE, CPU_SLICE, 3]
        torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-5)
        calls.clear()
        forward_in_slices(forward, batch, on_cpu=False)  # a GPU takes the batch whole
        assert calls == [len(batch)]
