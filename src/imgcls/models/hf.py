"""Hugging Face transformers image classifiers behind timm's model interface.

``--model hf:DIR`` (a folder saved with ``save_pretrained``) or ``hf:ORG/NAME`` (downloaded from the
Hub when online). :class:`HFClassifier` wraps the ``*ForImageClassification`` model so that it offers
what imgcls uses of a timm model (``forward_features`` -> ``forward_head`` -> ``get_classifier``,
``reset_classifier``, ``num_features``): strategies, feature caching and export need nothing special.

A checkpoint keeps the transformers config as plain data (``config.to_dict()``), so predict, export
and serve rebuild the network with ``AutoModelForImageClassification.from_config`` -- no download
and no original directory needed. Preprocessing (size, mean/std, resample, crop) comes from the
model's image processor and is saved with the checkpoint like any other model's.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data.presets import Preprocess
from imgcls.errors import ModelError, first_line

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
HF_ARCH_PREFIX = "transformers:"  # ModelSpec.arch of a transformers model, e.g. transformers:vit
INSTALL_HINT = "install the extra: pip install 'imgcls[hf]' (transformers)"
CLASSIFIER_ATTRS = ("classifier", "head", "fc")
# PIL resample codes that image processors store -> torchvision interpolation names.
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def is_hf_name(name: str) -> bool:
    return name.startswith(HF_PREFIX)


def is_hf_arch(arch: str) -> bool:
    return arch.startswith(HF_ARCH_PREFIX)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelError(f"Hugging Face models need the transformers package; {INSTALL_HINT}") from None
    transformers.utils.logging.set_verbosity_error()  # load reports and notices are not the user's business
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _source_of(name: str) -> tuple[str, bool]:
    """(directory or Hub id, whether it is a local directory) of an ``hf:`` name."""
    source = name[len(HF_PREFIX):].strip()
    if not source:
        raise ModelError("--model hf: needs a folder saved with save_pretrained or a Hub id: hf:DIR or hf:ORG/NAME")
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} has no config.json; save the model there with "
                             f"model.save_pretrained(DIR) (and its image processor with processor.save_pretrained(DIR))")
        return str(path), True
    looks_local = source.startswith((".", "/", "~")) or path.exists() or source.count("/") != 1
    if looks_local:
        raise ModelError(f"model folder not found: {source}; give hf:DIR with a folder saved by save_pretrained, "
                         f"or hf:ORG/NAME for a model on the Hugging Face Hub")
    return source, False


def check_hf_name(name: str) -> tuple[str, bool]:
    """Fail early (before the data is scanned) on a missing folder, an unreachable Hub or a missing
    transformers; returns (directory or Hub id, whether it is local)."""
    source, local = _source_of(name)
    _transformers()
    if not local and not in_hub_cache(source) and not hub_reachable():
        raise ModelError(f"{name}: not in the local Hugging Face cache and the Hub cannot be reached (offline); "
                         f"connect once to download it, or save the model with save_pretrained and pass hf:DIR")
    return source, local


class HFClassifier(nn.Module):
    """A transformers image classifier with timm's interface; its head is a plain ``nn.Linear``."""

    def __init__(self, hf_model: nn.Module, interpolate_pos_encoding: bool = False):
        super().__init__()
        self.hf = hf_model
        head = _take_head(hf_model)
        self.head: nn.Module = head
        self.num_features = head.in_features
        self.num_classes = head.out_features
        self.forward_kwargs = {"interpolate_pos_encoding": True} if interpolate_pos_encoding else {}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: the transformers model with its classifier taken out (an identity)."""
        return self.hf(pixel_values=x, **self.forward_kwargs).logits

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes
        self.hf.config.num_labels = max(1, num_classes)  # keeps config.to_dict() in step with the head


def _take_head(hf_model: nn.Module) -> nn.Linear:
    """Remove the final Linear of the model's classifier (replaced by an identity) and return it."""
    for attr in CLASSIFIER_ATTRS:
        module = getattr(hf_model, attr, None)
        if isinstance(module, nn.Linear):
            setattr(hf_model, attr, nn.Identity())
            return module
        if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Linear):
            head = module[-1]
            module[-1] = nn.Identity()
            return head
    raise ModelError(f"{type(hf_model).__name__}: its classifier is not a single linear layer, which imgcls "
                     f"needs to resize the head; use a timm model or another transformers model")


def to_transformers(model: HFClassifier, classes: list[str]) -> nn.Module:
    """The plain transformers model again (its own classifier holding imgcls's head), labelled with
    ``classes``: what ``save_pretrained`` writes and ``pipeline("image-classification")`` loads."""
    import copy

    hf_model = copy.deepcopy(model.hf)
    head = copy.deepcopy(model.head)
    for attr in CLASSIFIER_ATTRS:
        module = getattr(hf_model, attr, None)
        if isinstance(module, nn.Identity):
            setattr(hf_model, attr, head)
            break
        if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Identity):
            module[-1] = head
            break
    else:
        raise ModelError(f"{type(hf_model).__name__}: found no place for the classifier head")
    hf_model.config.num_labels = len(classes)
    hf_model.config.id2label = dict(enumerate(classes))
    hf_model.config.label2id = {name: index for index, name in enumerate(classes)}
    return hf_model.eval()


def _accepts_interpolation(hf_model: nn.Module) -> bool:
    return "interpolate_pos_encoding" in inspect.signature(type(hf_model).forward).parameters


def plain_config(hf_model: nn.Module) -> dict[str, Any]:
    """The transformers config as JSON-safe plain data (what a weights_only checkpoint may hold)."""
    return json.loads(hf_model.config.to_json_string(use_diff=False))


def _size_value(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def processor_preprocess(processor: Any, config: Any, img_size: int | None) -> Preprocess:
    """The eval preprocessing of an image processor, as imgcls's Preprocess (resize, crop, normalise)."""
    size = getattr(processor, "size", None) or {}
    height = _size_value(size, "height")
    shortest = _size_value(size, "shortest_edge")
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    crop_height = _size_value(crop, "height") if crop else None
    if crop_height:
        native, crop_pct = crop_height, crop_height / float(shortest or height or crop_height)
    elif height or shortest:
        # Fixed-size resizes (ViT) become resize+crop of the same size; ConvNeXt-style crop_pct is kept.
        native = height or shortest
        crop_pct = float(getattr(processor, "crop_pct", None) or 1.0) if shortest and not height else 1.0
    else:
        native, crop_pct = int(getattr(config, "image_size", 224)), 1.0
    normalise = getattr(processor, "do_normalize", True)
    mean = tuple(processor.image_mean) if normalise and getattr(processor, "image_mean", None) else (0.0, 0.0, 0.0)
    std = tuple(processor.image_std) if normalise and getattr(processor, "image_std", None) else (1.0, 1.0, 1.0)
    resample = getattr(processor, "resample", None)
    interpolation = PIL_RESAMPLE.get(int(resample), "bilinear") if resample is not None else "bilinear"
    return Preprocess(img_size=img_size or native, mean=mean, std=std, interpolation=interpolation,
                      crop_pct=min(1.0, crop_pct))


@contextlib.contextmanager
def _hub_errors(name: str, local: bool) -> Iterator[None]:
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub, network and file errors come in many types
        if local:
            raise ModelError(f"{name}: transformers cannot load it ({type(exc).__name__}: {first_line(exc)}); "
                             f"save an image-classification model there with save_pretrained") from None
        raise ModelError(f"{name}: could not get it from the Hugging Face Hub ({type(exc).__name__}: "
                         f"{first_line(exc, 120)}); check the name and the network, or save the model with "
                         f"save_pretrained and pass hf:DIR") from None


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers at all: offline, its client retries for ~25 s before failing."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


def _load_processor(transformers: Any, source: str) -> Any:
    try:
        return transformers.AutoImageProcessor.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - no preprocessor_config.json, among others
        log.warning("%s: no image processor (%s); using the config's image size and mean = std = 0.5",
                    source, first_line(exc, 80))
        return None


def create_hf_model(name: str, num_classes: int, *, pretrained: bool = True, img_size: int | None = None
                    ) -> tuple[HFClassifier, dict[str, Any], Preprocess, str | None]:
    """(model, ModelSpec kwargs, preprocessing, weights source) for an ``hf:`` name."""
    source, local = check_hf_name(name)
    transformers = _transformers()
    auto = transformers.AutoModelForImageClassification
    with _hub_errors(name, local):
        if pretrained:
            hf_model = auto.from_pretrained(source)
        else:
            hf_model = auto.from_config(transformers.AutoConfig.from_pretrained(source))
        processor = _load_processor(transformers, source)
    if processor is None:
        processor = type("DefaultProcessor", (), {"image_mean": [0.5] * 3, "image_std": [0.5] * 3})()
    preprocess = processor_preprocess(processor, hf_model.config, img_size)
    native = getattr(hf_model.config, "image_size", None)
    interpolate = bool(img_size and native and img_size != native and _accepts_interpolation(hf_model))
    model = HFClassifier(hf_model, interpolate)
    model.reset_classifier(num_classes)
    kwargs: dict[str, Any] = {"config": plain_config(hf_model)}
    if interpolate:
        kwargs["interpolate_pos_encoding"] = True
    weights = f"transformers {'folder' if local else 'Hub'} {source}" if pretrained else None
    return model, kwargs, preprocess, weights


def in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def hf_arch(kwargs: dict[str, Any]) -> str:
    return HF_ARCH_PREFIX + str(kwargs["config"].get("model_type", "unknown"))


def build_hf_model(num_classes: int, kwargs: dict[str, Any]) -> HFClassifier:
    """The network of a checkpoint's spec, from its saved config alone (random weights; tensors go in next)."""
    transformers = _transformers()
    config_dict = dict(kwargs["config"])
    model_type = config_dict.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise ModelError(f"this transformers ({transformers.__version__}) does not know model type {model_type!r}; "
                         f"upgrade transformers")
    config = transformers.CONFIG_MAPPING[model_type].from_dict(config_dict)
    hf_model = transformers.AutoModelForImageClassification.from_config(config)
    model = HFClassifier(hf_model, bool(kwargs.get("interpolate_pos_encoding")))
    if model.num_classes != num_classes:
        model.reset_classifier(num_classes)
    return model
