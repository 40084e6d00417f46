"""Transfer-learning strategies: which parameters train, and at what rates.

- scratch: every parameter trains from random initialisation;
- feature-extraction (linear probe): the pretrained backbone is frozen, only the new head trains;
- finetune: every parameter trains, starting from pretrained weights;
- staged: feature extraction first, then fine-tuning of everything at a lower rate.
"""

from __future__ import annotations

from typing import Any

from torch import nn

# Default learning rates by optimizer family and strategy (AdamW/Adam vs SGD with momentum).
DEFAULT_LR = {
    "adam": {"scratch": 1e-3, "feature-extraction": 3e-3, "finetune": 3e-4, "staged": 3e-3},
    "sgd": {"scratch": 0.05, "feature-extraction": 0.03, "finetune": 3e-3, "staged": 0.03},
}


def default_lr(strategy: str, optimizer: str) -> float:
    return DEFAULT_LR["sgd" if optimizer == "sgd" else "adam"][strategy]


def freeze_backbone(model: nn.Module) -> None:
    """Freeze everything but the classifier head."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in model.get_classifier().parameters():
        parameter.requires_grad_(True)


def unfreeze(model: nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(True)


def apply_strategy(model: nn.Module, strategy: str) -> dict[str, Any]:
    """Set ``requires_grad`` for ``strategy``; returns the recipe settings it implies."""
    if strategy == "feature-extraction":
        freeze_backbone(model)
        return {"frozen": True}
    unfreeze(model)
    return {"frozen": False}
