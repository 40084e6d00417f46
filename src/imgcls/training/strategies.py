"""Transfer-learning strategies: which parameters train, on what inputs, at what rates.

- scratch: every parameter trains from random initialisation;
- feature-extraction (linear probe): the pretrained backbone is frozen, only the new head trains --
  on embeddings extracted once and cached (``features.py``), not by re-running the backbone every epoch;
- finetune: the network trains from pretrained weights, earlier layers at lower rates (layer decay); on
  small data only its last blocks (``--trainable-blocks``), the early ones keep their pretrained weights;
- staged: feature extraction first (the head learns on the cache), then fine-tuning (as finetune) at
  a thirtieth of the rate -- linear probing, then fine-tuning, in one run directory.

A strategy becomes a list of :class:`Stage`; each stage is one Lightning ``fit`` with its own
optimizer and schedule, and the run's epoch rows continue across stages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

log = logging.getLogger(__name__)

# Default learning rates by optimizer family and strategy (AdamW/Adam vs SGD with momentum).
# For staged, the rate is stage 1's (the head); stage 2 fine-tunes at STAGED_FINETUNE_FACTOR of it.
DEFAULT_LR = {
    "adam": {"scratch": 1e-3, "feature-extraction": 3e-3, "finetune": 3e-4, "staged": 3e-3},
    "sgd": {"scratch": 0.05, "feature-extraction": 0.03, "finetune": 3e-3, "staged": 0.03},
}
# A tenth (3e-4 with AdamW) still cost the full-size ants/bees photos up to 3 val photos below stage 1's best
# in mid fine-tuning, with BatchNorm frozen and a warm-up epoch; a thirtieth keeps closer to the trained head.
STAGED_FINETUNE_FACTOR = 0.03
# Per-layer lr factor towards the input when fine-tuning (timm's layer_decay): the head trains at
# lr, each earlier block group at 0.85x the next. Pretrained early layers hold generic features
# worth keeping; small data cannot retrain them without forgetting.
DEFAULT_LAYER_DECAY = 0.85


def default_lr(strategy: str, optimizer: str) -> float:
    return DEFAULT_LR["sgd" if optimizer == "sgd" else "adam"][strategy]


def default_head_epochs(epochs: int) -> int:
    """Stage 1 of staged: half the epochs (at least one; stage 2 gets at least one when epochs >= 2)."""
    return max(1, min(epochs - 1, (epochs + 1) // 2)) if epochs > 1 else 1


def default_layer_decay(strategy: str) -> float:
    return DEFAULT_LAYER_DECAY if strategy in ("finetune", "staged") else 1.0


@dataclass(frozen=True)
class Stage:
    """One ``Trainer.fit`` of a strategy."""

    index: int
    epochs: int
    frozen: bool  # backbone frozen: only the classifier head trains
    lr: float
    layer_decay: float  # 1.0 = one rate for all layers
    warmup_epochs: int
    trainable_blocks: int | None = None  # not frozen: only the last this many layer groups train; None = all

    @property
    def name(self) -> str:
        return "head" if self.frozen else "full"

    @property
    def trains(self) -> str:
        if self.frozen:
            return "head only"
        return "all layers" if self.trainable_blocks is None else f"the last {self.trainable_blocks} layer groups"


def plan_stages(strategy: str, epochs: int, lr: float, layer_decay: float, warmup_epochs: int,
                head_epochs: int | None = None, trainable_blocks: int | None = None) -> list[Stage]:
    """The stages ``strategy`` trains in; their epochs add up to ``epochs``. ``trainable_blocks``: fine-tuning
    trains only the network's last this many layer groups (None: all)."""
    if strategy == "feature-extraction":
        return [Stage(0, epochs, True, lr, 1.0, warmup_epochs)]
    if strategy == "scratch":
        return [Stage(0, epochs, False, lr, 1.0, warmup_epochs)]
    if strategy == "finetune":
        return [Stage(0, epochs, False, lr, layer_decay, warmup_epochs, trainable_blocks)]
    head = head_epochs or default_head_epochs(epochs)
    if head >= epochs:
        log.warning("staged: --head-epochs %d leaves no epoch of the %d for fine-tuning; only the head trains",
                    head, epochs)
        return [Stage(0, epochs, True, lr, 1.0, warmup_epochs)]
    # Stage 2 starts from a trained head at a lower rate, warmed up over its first epoch: the
    # first full-rate steps on a backbone that never saw this data's gradients are what cost val accuracy.
    finetune_epochs = epochs - head
    return [Stage(0, head, True, lr, 1.0, warmup_epochs),
            Stage(1, finetune_epochs, False, lr * STAGED_FINETUNE_FACTOR, layer_decay, int(finetune_epochs >= 2),
                  trainable_blocks)]


def freeze_backbone(model: nn.Module) -> None:
    """Freeze everything but the classifier head."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in model.get_classifier().parameters():
        parameter.requires_grad_(True)


def unfreeze(model: nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(True)


def freeze_early_blocks(model: nn.Module, trainable_blocks: int) -> int:
    """Freeze all but the last ``trainable_blocks`` layer groups (timm's ``group_matcher``, one group per block;
    the head is the last); returns how many groups the model has, 0 when it names none (all then train).
    Autograd then never runs the backward pass of the frozen early layers, at full resolution the largest part
    of a CNN's step on a CPU."""
    if not hasattr(model, "group_matcher"):
        return 0
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=False))
    first_trained = max(groups) - trainable_blocks + 1
    for group, names in groups.items():
        if group < first_trained:
            for name in names:
                model.get_parameter(name).requires_grad_(False)
    return len(groups)


def apply_stage(model: nn.Module, stage: Stage) -> dict[str, Any]:
    """Set ``requires_grad`` for ``stage``; returns the recipe settings it implies."""
    if stage.frozen:
        freeze_backbone(model)
    else:
        unfreeze(model)
        if stage.trainable_blocks is not None:
            groups = freeze_early_blocks(model, stage.trainable_blocks)
            if not groups:
                log.info("--trainable-blocks %d: %s names no layer groups; every layer trains",
                         stage.trainable_blocks, type(model).__name__)
            elif stage.trainable_blocks < groups:
                log.info("the last %d of %d layer groups train (the head included); the earlier ones keep their "
                         "pretrained weights", stage.trainable_blocks, groups)
    return {"frozen": stage.frozen, "lr": stage.lr, "layer_decay": stage.layer_decay, "epochs": stage.epochs,
            "warmup_epochs": stage.warmup_epochs}
