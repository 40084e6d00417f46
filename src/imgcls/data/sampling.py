"""The training order: a fresh seeded order each epoch that a resumed run reproduces exactly.

The order of epoch ``e`` depends only on (seed, e), never on how many epochs this process has run,
so a run resumed mid-epoch draws the same order and skips the samples its earlier session trained on.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Shuffled indices (or, with ``weights``, a class-balanced draw with replacement) for each epoch.

    ``resume_at=(epoch, samples)`` drops the first ``samples`` indices of that epoch: the batches a
    previous session finished before it was stopped. Lightning calls :meth:`set_epoch` before each epoch.
    """

    def __init__(self, num_samples: int, seed: int, weights: torch.Tensor | None = None,
                 resume_at: tuple[int, int] | None = None):
        self.num_samples, self.seed, self.weights = num_samples, seed, weights
        self.resume_at = resume_at
        self.epoch = resume_at[0] if resume_at else 0  # the loader's first iterator is made before set_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        if self.resume_at and self.resume_at[0] == self.epoch:
            order = order[self.resume_at[1]:]
        return iter(order.tolist())

    def __len__(self) -> int:
        # The full epoch, also when resuming: Lightning counts the finished batches itself.
        return self.num_samples
