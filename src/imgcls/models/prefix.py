"""Validation past a frozen prefix of the network: what it computes on the val images is kept after the first epoch.

Fine-tuning small data trains only a network's last blocks (``--trainable-blocks``, training/decide.py); the layers
before them are frozen, their BatchNorm statistics too, so on the same val images they compute the same activations
every epoch. With efficientnet_lite0 at 224 px and its last 6 of 18 layer groups training, that prefix is 85 % of a
val forward on a CPU (30 of 35 ms per image, 2 cores). Its output on each val batch is kept (in memory, within
``BUDGET_BYTES``) and later epochs run only the layers after it: the same numbers, computed once.

Nothing stale is used: a batch whose pixels differ from the kept one's is computed again, and any in-place write to
the prefix's weights or statistics (an optimizer step, ``load_state_dict``) bumps a tensor's version, which empties
the cache. Only networks whose ``forward_features`` is a plain sequence of layers take part (timm's EfficientNet,
MobileNetV3 and ResNet families; checked against ``forward_features`` on the first batch); others validate as
before. On a GPU the forward is cheap next to the input pipeline, so the cache is for CPUs only.
"""

from __future__ import annotations

import logging
import torch
from torch import nn

from imgcls.models.chunked import forward_in_slices

log = logging.getLogger(__name__)

BUDGET_BYTES = 512 * 2**20  # kept activations at most (lite0's prefix: 88 KB per image, so ~6,000 val images)


def feature_layers(model: nn.Module) -> list[nn.Module] | None:
    """``model.forward_features`` as the flat list of layers it runs in order; None where it is not one."""
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet

    if getattr(model, "grad_checkpointing", False):
        return None
    if isinstance(model, EfficientNet):
        return [model.conv_stem, model.bn1, *(block for stage in model.blocks for block in stage),
                model.conv_head, model.bn2]
    if isinstance(model, MobileNetV3):
        return [model.conv_stem, model.bn1, *(block for stage in model.blocks for block in stage)]
    if isinstance(model, ResNet):
        return [model.conv1, model.bn1, model.act1, model.maxpool,
                *(block for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for block in layer)]
    return None


def _run(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _state(layers: list[nn.Module]) -> list[torch.Tensor]:
    """The layers' weights and statistics: what, unchanged, makes their output on the same pixels the same."""
    return [t for layer in layers for t in (*layer.parameters(), *layer.buffers())]


def _size(t: torch.Tensor) -> int:
    return t.element_size() * t.numel()


def _fingerprint(x: torch.Tensor) -> torch.Tensor:
    return x[..., ::23, ::23].clone()  # a sparse grid of the pixels: enough to tell another batch apart


class FrozenPrefix:
    """Pooled embeddings of val batches, the frozen leading layers' part kept per batch index."""

    def __init__(self, model: nn.Module, layers: list[nn.Module], cut: int):
        self.model = model
        self.prefix, self.rest = layers[:cut], layers[cut:]
        self._state = _state(self.prefix)
        self._version = self._state_version()
        self._kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._bytes = 0

    @classmethod
    def of(cls, model: nn.Module, probe: torch.Tensor) -> FrozenPrefix | None:
        """The cache for ``model`` as it trains now (its leading layers with no trainable parameter), or None when
        there is no such prefix or ``forward_features`` is not the sequence :func:`feature_layers` names."""
        layers = feature_layers(model)
        if not layers:
            return None
        cut = 0
        while cut < len(layers) and not any(p.requires_grad for p in layers[cut].parameters()):
            cut += 1
        if cut == 0 or any(t.is_inference() for t in _state(layers[:cut])):  # inference tensors keep no version to watch
            return None
        with torch.inference_mode():
            same = torch.allclose(_run(layers, probe[:2]), model.forward_features(probe[:2]), atol=1e-5, rtol=1e-4)
        if not same:
            log.debug("%s: forward_features is not its layers in sequence; val runs whole", type(model).__name__)
            return None
        return cls(model, layers, cut)

    def _state_version(self) -> tuple[int, ...]:
        return tuple(t._version for t in self._state)

    def embed(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """``embed(model, x)`` (pooled pre-logit features), the prefix's output taken from the cache when this
        batch index held the same pixels before and the prefix has not changed since."""
        version = self._state_version()
        if version != self._version:
            self._kept.clear()
            self._bytes, self._version = 0, version
        kept = self._kept.get(batch_idx)
        mark = _fingerprint(x)
        if kept is not None and kept[1].shape == mark.shape and torch.equal(kept[1], mark):
            middle = kept[0]
        else:
            middle = forward_in_slices(lambda part: _run(self.prefix, part), x, True)
            if kept is not None:  # another batch at this index now: it takes the place
                del self._kept[batch_idx]
                self._bytes -= _size(kept[0])
            if self._bytes + _size(middle) <= BUDGET_BYTES:
                self._kept[batch_idx] = (middle, mark)
                self._bytes += _size(middle)
        return forward_in_slices(lambda part: self.model.forward_head(_run(self.rest, part), pre_logits=True), middle,
                                 True)
