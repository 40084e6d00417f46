"""The one-cycle learning-rate schedule (``--scheduler onecycle``), stepped every batch.

The rate climbs linearly from lr/25 to lr over the warm-up (``--warmup-epochs``, else the first
quarter of training) and falls linearly to almost zero by the last step, as in the CIFAR-10 speed
records. torch's OneCycleLR does the arithmetic; Lightning steps it after every optimizer step.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import OneCycleLR

from imgcls.models.recipe import Recipe


def one_cycle(optimizer: Optimizer, recipe: Recipe, total_steps: int) -> dict[str, Any]:
    warmup = recipe.warmup_epochs / max(1, recipe.epochs)
    scheduler = OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=max(2, total_steps),
                           pct_start=min(0.9, warmup) if warmup > 0 else 0.25, anneal_strategy="linear",
                           div_factor=25.0, final_div_factor=1e3, cycle_momentum=False)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def is_step_scheduler(scheduler: Any) -> bool:
    return isinstance(scheduler, OneCycleLR)
