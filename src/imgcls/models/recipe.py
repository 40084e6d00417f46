"""The recipe a :class:`~imgcls.models.module.ClassifierModule` trains with: optimisation and stage settings.

Frozen and typed, with every default in the block below (the settings' own defaults come from
:class:`~imgcls.config.TrainConfig`). Checkpoints keep it as a plain dict (:meth:`Recipe.to_dict`), so they
load with ``weights_only=True``; :meth:`Recipe.from_dict` reads those dicts back, older ones included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from imgcls.config import TrainConfig


def _default(name: str) -> Any:
    return TrainConfig.model_fields[name].default


@dataclass(frozen=True)
class Recipe:
    lr: float
    optimizer: str = _default("optimizer")
    weight_decay: float = _default("weight_decay")
    momentum: float = _default("momentum")
    scheduler: str = _default("scheduler")
    warmup_epochs: int = _default("warmup_epochs")
    epochs: int = _default("epochs")
    label_smoothing: float = _default("label_smoothing")
    mixup: float = _default("mixup")
    cutmix: float = _default("cutmix")
    class_weights: tuple[float, ...] | None = None  # per class, for --balance loss
    layer_decay: float | None = None  # lr factor per layer towards the input; None or 1: one rate for all
    frozen: bool = False  # train the head alone (the backbone stays in eval mode)
    freeze_bn: bool = False  # BatchNorm layers keep their running statistics
    inputs: Literal["images", "features"] = "images"  # features: cached embeddings go straight to the head
    epoch_offset: int = 0  # epochs of earlier stages of the same run
    task: Literal["single", "multilabel"] = "single"  # multilabel: one sigmoid per class

    def __post_init__(self) -> None:
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_weights"] = list(self.class_weights) if self.class_weights is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """A recipe saved by :meth:`to_dict` (keys it does not know are left out, missing ones take defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
