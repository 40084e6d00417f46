"""The one model factory: the only caller of ``timm.create_model`` in imgcls.

``create_model`` checks the name (close matches in the error), builds timm or scratch nets,
resolves pretrained weights (offline package, ``--weights`` file, timm hub) and returns the model
with its :class:`ModelSpec` (enough to rebuild it from a checkpoint) and its :class:`Preprocess`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from imgcls.data.presets import Preprocess
from imgcls.errors import ModelError, close_matches, first_line
from imgcls.models.hf import (build_hf_model, check_hf_name, create_hf_model, hf_arch, hub_reachable, in_hub_cache,
                              is_hf_arch, is_hf_name)
from imgcls.models.scratch import SCRATCH_MODELS
from imgcls.models.weights import OFFLINE_PACKAGES, load_offline_package, load_weights_file

# Names imgcls gives to timm architectures. The default efficientnet_lite0 is timm's
# tf_efficientnet_lite0 (TF "same" padding), whose ImageNet weights ship offline; so do lite1's and lite2's.
MODEL_ALIASES = {f"efficientnet_lite{n}": f"tf_efficientnet_lite{n}" for n in (0, 1, 2)}

# timm's own prefixes: hf-hub:ORG/NAME (downloaded, then in the HF cache) and local-dir:DIR.
TIMM_SOURCES = ("hf-hub:", "local-dir:")

SCRATCH_PREPROCESS = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bilinear", "crop_pct": 1.0}


@dataclass
class ModelSpec:
    """What a checkpoint needs to rebuild the network: plain values only."""

    name: str  # as the user wrote it
    arch: str  # what is built
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(str(data["name"]), str(data["arch"]), int(data["num_classes"]), dict(data.get("kwargs") or {}))


@dataclass
class CreatedModel:
    model: nn.Module
    spec: ModelSpec
    preprocess: Preprocess
    weights: str | None  # where pretrained weights came from, None for random init

    @property
    def is_scratch_net(self) -> bool:
        return self.spec.arch in SCRATCH_MODELS


def embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logit features, what the classifier head sees (timm's interface, which the scratch nets and
    the ``hf:`` wrapper share): ``get_classifier()(embed(model, x))`` is ``model(x)``."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def resolve_arch(name: str) -> str:
    """The architecture for a model name; :class:`ModelError` with close matches when unknown."""
    arch = MODEL_ALIASES.get(name, name)
    if arch in SCRATCH_MODELS:
        return arch
    if is_hf_name(name):
        check_hf_name(name)
        return name
    if name.startswith(TIMM_SOURCES):
        return name  # resolved to its architecture (and arguments) from its config.json when built
    base = arch.split(".", 1)[0]  # timm pretrained tags: resnet50.a1_in1k
    if timm.is_model(base):
        return arch
    known = [*SCRATCH_MODELS, *MODEL_ALIASES, *timm.list_models()]
    raise ModelError(f"unknown model '{name}'{close_matches(name, known)}; "
                     f"`imgcls models` lists them (timm names and {', '.join(SCRATCH_MODELS)})")


def _apply_cifar_stem(model: nn.Module, arch: str) -> None:
    """3x3 stride-1 first conv and no max-pool, for 32-pixel images (torchvision-style ResNets)."""
    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ModelError(f"--cifar-stem needs a ResNet-style model with conv1 and maxpool; {arch} has none; "
                         f"use resnet18/resnet34/resnet50 or resnet_cifar")
    model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()


def _build(spec: ModelSpec, pretrained: bool = False) -> nn.Module:
    kwargs = dict(spec.kwargs)
    cifar_stem = kwargs.pop("cifar_stem", False)
    if spec.arch in SCRATCH_MODELS:
        return SCRATCH_MODELS[spec.arch](num_classes=spec.num_classes, **kwargs)
    if is_hf_arch(spec.arch):
        return build_hf_model(spec.num_classes, kwargs)
    try:
        model = timm.create_model(spec.arch, pretrained=pretrained, num_classes=spec.num_classes, **kwargs)
    except TypeError as exc:
        raise ModelError(f"{spec.arch} does not take these options ({exc})") from None
    if cifar_stem:
        _apply_cifar_stem(model, spec.arch)
    return model


def build_model(spec: ModelSpec) -> nn.Module:
    """The architecture of ``spec`` with fresh weights (a checkpoint's tensors go in next)."""
    return _build(spec)


def _timm_preprocess(model: nn.Module, img_size: int | None) -> Preprocess:
    config = timm.data.resolve_data_config({}, model=model)
    return Preprocess(img_size=img_size or int(config["input_size"][-1]), mean=tuple(config["mean"]),
                      std=tuple(config["std"]), interpolation=config.get("interpolation", "bicubic"),
                      crop_pct=float(config.get("crop_pct", 0.875)))


def create_model(name: str, num_classes: int, *, pretrained: bool = True, weights: str | None = None,
                 img_size: int | None = None, **kwargs: Any) -> CreatedModel:
    """Build ``name`` with a ``num_classes``-way head, pretrained where asked and possible."""
    arch = resolve_arch(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None and v is not False}
    if is_hf_name(name):
        return _create_hf(name, num_classes, pretrained=pretrained, weights=weights, img_size=img_size)
    if arch.startswith(TIMM_SOURCES):
        arch, kwargs = _timm_source_arch(name, kwargs)
    if arch in SCRATCH_MODELS:
        spec = ModelSpec(name, arch, num_classes, kwargs)
        model = _build(spec)
        source = load_weights_file(model, weights) if weights else None
        return CreatedModel(model, spec, Preprocess(img_size=img_size or 64, **SCRATCH_PREPROCESS), source)

    fixed_size = timm.models.get_pretrained_cfg_value(arch, "fixed_input_size") if "." not in arch else None
    if img_size and fixed_size:
        kwargs["img_size"] = img_size  # ViTs resize their position embeddings to the input size
    spec = ModelSpec(name, arch, num_classes, kwargs)
    base_arch = arch.split(".", 1)[0]
    if pretrained and not weights and name.startswith(TIMM_SOURCES):
        model = _build(ModelSpec(name, name, num_classes, {}), pretrained=True)  # weights from that source
        source = f"timm {name}"
    elif weights:
        model = _build(spec)
        source: str | None = load_weights_file(model, weights)
    elif pretrained and base_arch in OFFLINE_PACKAGES:
        model = _build(ModelSpec(name, arch, 1000, {k: v for k, v in kwargs.items() if k != "cifar_stem"}))
        source = load_offline_package(model, base_arch)
        if num_classes != 1000:
            model.reset_classifier(num_classes)
        if kwargs.get("cifar_stem"):
            _apply_cifar_stem(model, arch)
    elif pretrained:
        try:
            model = _build(spec, pretrained=True)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - hub/network errors come in many types
            raise ModelError(f"no pretrained weights for '{name}' are available offline and fetching them failed "
                             f"({type(exc).__name__}); pass --weights PATH to a local weights file, "
                             f"or --no-pretrained to train from random initialisation") from None
        source = f"timm pretrained ({arch})"
    else:
        model = _build(spec)
        source = None
    return CreatedModel(model, spec, _timm_preprocess(model, img_size), source)


def _timm_source_arch(name: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The architecture and arguments behind a timm ``hf-hub:``/``local-dir:`` name, so that a checkpoint
    rebuilds it with no hub and no folder."""
    source, _, model_id = name.partition(":")
    if source == "hf-hub" and not in_hub_cache(model_id) and not hub_reachable():
        raise ModelError(f"{name}: the Hugging Face Hub cannot be reached (offline); connect once so timm caches it, "
                         f"or use a timm name with --weights PATH")
    try:
        if source == "hf-hub":
            _, arch, model_args = timm.models.load_model_config_from_hf(model_id)
        else:
            _, arch, model_args = timm.models.load_model_config_from_path(model_id)
    except Exception as exc:  # noqa: BLE001 - hub, network and file errors come in many types
        raise ModelError(f"{name}: cannot read its config.json ({type(exc).__name__}: {first_line(exc, 120)}); "
                         f"check the name and the network, or use a timm name with --weights PATH") from None
    return arch, {**(model_args or {}), **kwargs}


def _create_hf(name: str, num_classes: int, *, pretrained: bool, weights: str | None,
               img_size: int | None) -> CreatedModel:
    model, kwargs, preprocess, source = create_hf_model(name, num_classes, pretrained=pretrained and not weights,
                                                        img_size=img_size)
    if weights:
        source = load_weights_file(model, weights)
    return CreatedModel(model, ModelSpec(name, hf_arch(kwargs), num_classes, kwargs), preprocess, source)
