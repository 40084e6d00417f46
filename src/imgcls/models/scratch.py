"""The seeds' from-scratch networks, with timm's model interface.

Each net exposes ``forward_features`` / ``forward_head(x, pre_logits)`` / ``get_classifier`` /
``reset_classifier`` / ``num_features`` like a timm model, so strategies, feature extraction and
export treat every model alike. All are size-agnostic (global pooling before the head).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
import torch.nn.functional as F


class ScratchNet(nn.Module):
    """A body (``features``) + global average pool + optional hidden layer + linear classifier."""

    num_features: int

    def __init__(self, features: nn.Module, width: int, num_classes: int, hidden: int = 0, drop_rate: float = 0.0,
                 in_chans: int = 3):
        super().__init__()
        self.in_chans = in_chans
        self.features = features
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.pre_logits = (nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True)) if hidden
                           else nn.Identity())
        self.num_features = hidden or width
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pre_logits(self.global_pool(x)))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def small_cnn(num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.2, **_: object) -> ScratchNet:
    """Three conv blocks (32-64-128, BatchNorm, max-pool) + global average pooling: the seeds' SmallCNN."""
    layers: list[nn.Module] = []
    for cin, cout in ((in_chans, 32), (32, 64), (64, 128)):
        layers += [*_conv_bn(cin, cout), nn.MaxPool2d(2)]
    return ScratchNet(nn.Sequential(*layers), 128, num_classes, hidden=128, drop_rate=drop_rate, in_chans=in_chans)


def cifar_cnn(num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.5, **_: object) -> ScratchNet:
    """VGG-style: three blocks of two 3x3 convs with BatchNorm, max-pool and Dropout2d(0.25)."""
    layers: list[nn.Module] = []
    cin = in_chans
    for width in (64, 128, 256):
        layers += [*_conv_bn(cin, width), *_conv_bn(width, width), nn.MaxPool2d(2), nn.Dropout2d(0.25)]
        cin = width
    return ScratchNet(nn.Sequential(*layers), 256, num_classes, hidden=512, drop_rate=drop_rate, in_chans=in_chans)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual shortcut (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


def resnet_cifar(num_classes: int = 10, in_chans: int = 3, depths: tuple[int, ...] = (2, 2, 2, 2),
                 widths: tuple[int, ...] = (64, 128, 256, 512), drop_rate: float = 0.0, **_: object) -> ScratchNet:
    """ResNet-18 layout with a CIFAR stem (3x3 conv, stride 1, no max-pool) for small images."""
    layers: list[nn.Module] = _conv_bn(in_chans, widths[0])
    cin = widths[0]
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        for block in range(depth):
            layers.append(BasicBlock(cin, width, stride=2 if stage > 0 and block == 0 else 1))
            cin = width
    return ScratchNet(nn.Sequential(*layers), cin, num_classes, drop_rate=drop_rate, in_chans=in_chans)


class Residual(nn.Sequential):
    """x + body(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def cifar_resnet9(num_classes: int = 10, in_chans: int = 3, widths: tuple[int, int, int, int] = (64, 128, 256, 512),
                  drop_rate: float = 0.0, **_: object) -> ScratchNet:
    """ResNet-9 of the DAWNBench CIFAR-10 records (the ancestor of airbench): a prep conv, three stages of
    conv + max-pool, residual pairs of convs after the first and the last. Fast on GPUs at batch 512."""
    w0, w1, w2, w3 = widths
    layers: list[nn.Module] = [
        *_conv_bn(in_chans, w0),
        *_conv_bn(w0, w1), nn.MaxPool2d(2), Residual(*_conv_bn(w1, w1), *_conv_bn(w1, w1)),
        *_conv_bn(w1, w2), nn.MaxPool2d(2),
        *_conv_bn(w2, w3), nn.MaxPool2d(2), Residual(*_conv_bn(w3, w3), *_conv_bn(w3, w3)),
    ]
    return ScratchNet(nn.Sequential(*layers), w3, num_classes, drop_rate=drop_rate, in_chans=in_chans)


SCRATCH_MODELS: dict[str, Callable[..., ScratchNet]] = {
    "small_cnn": small_cnn,
    "cifar_cnn": cifar_cnn,
    "resnet_cifar": resnet_cifar,
    "cifar_resnet9": cifar_resnet9,
}
