"""An imgcls checkpoint -> a folder in the Hugging Face layout that transformers and timm load as it is.

timm models: ``model.safetensors`` holds timm's own state dict and ``config.json`` is timm's hub config
(architecture, num_classes, label_names, model_args, pretrained_cfg), which both
``timm.create_model("local-dir:DIR", pretrained=True)`` and transformers' TimmWrapper read. ``hf:``
models: the transformers model with imgcls's head put back, saved with ``save_pretrained``, and an
image processor that resizes and crops as imgcls does. Either way config.json gets an ``"imgcls"``
section: class names, preprocessing, calibration and the "unknown" threshold when the run has them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data.presets import Preprocess
from imgcls.errors import ExportError
from imgcls.models.metadata import ExportMeta
from imgcls.models.checkpoint import LoadedCheckpoint
from imgcls.models.hf import PIL_RESAMPLE, is_hf_arch
from imgcls.models.ood import public_ood
from imgcls.models.scratch import SCRATCH_MODELS
from imgcls.models.task import is_multilabel

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
IMGCLS_SECTION = "imgcls"
# Fields of timm's default pretrained config that describe other weights than these.
FOREIGN_CFG_KEYS = ("tag", "hf_hub_id", "url", "file", "source", "license", "paper_ids", "paper_name",
                    "origin_url", "notes")
PIL_CODES = {name: code for code, name in PIL_RESAMPLE.items()}


def imgcls_section(meta: ExportMeta, info: dict[str, Any]) -> dict[str, Any]:
    """What imgcls knows beyond the layout: the export metadata, plus calibration and "unknown" settings."""
    section = json.loads(meta.to_json())
    if info.get("calibration"):
        section["calibration"] = info["calibration"]
    if info.get("ood"):  # the class means are a tensor, and the folder's network cannot compute the score anyway
        section["ood"] = public_ood(info["ood"])
    return section


def check_exportable(checkpoint: LoadedCheckpoint) -> str:
    """"timm" or "transformers"; :class:`ExportError` for networks neither library can build."""
    arch = checkpoint.spec.arch
    if is_multilabel(checkpoint.info):
        raise ExportError("--format hf exports single-label models (a pipeline answers with a softmax over the "
                          "classes); export this multi-label model with --format onnx or openvino")
    if arch in SCRATCH_MODELS:
        raise ExportError(f"--format hf needs a timm or hf: model; {arch} is an imgcls scratch net that neither "
                          f"transformers nor timm can build; export it with --format onnx or openvino")
    if checkpoint.spec.kwargs.get("cifar_stem"):
        raise ExportError(f"--format hf: {arch} was trained with --cifar-stem, which timm cannot rebuild from a "
                          f"config; export it with --format onnx or openvino")
    return "transformers" if is_hf_arch(arch) else "timm"


def timm_data_config(pre: Preprocess) -> dict[str, Any]:
    """imgcls's eval preprocessing in timm's terms: shorter side to img_size / crop_pct, centre crop."""
    return {"input_size": (3, pre.img_size, pre.img_size), "mean": tuple(pre.mean), "std": tuple(pre.std),
            "interpolation": pre.interpolation, "crop_pct": pre.crop_pct, "crop_mode": "center"}


def fold_temperature(model: nn.Module, section: dict[str, Any]) -> nn.Module:
    """Divide the classifier's weights and bias by the calibration temperature, so that the folder's logits are
    the calibrated ones in any client (a pipeline applies no temperature of its own); the section says so."""
    calibration = section.get("calibration")
    temperature = float(calibration.get("temperature") or 1.0) if isinstance(calibration, dict) else 1.0
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if temperature == 1.0 or not isinstance(head, nn.Linear):
        return model
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    section["calibration"] = {**calibration, "in_weights": True}
    return model


def write_timm_folder(model: nn.Module, checkpoint: LoadedCheckpoint, section: dict[str, Any], folder: Path) -> None:
    import timm

    timm.models.save_for_hf(model, str(folder), model_config={"label_names": list(checkpoint.classes)},
                            safe_serialization=True, data_config=timm_data_config(checkpoint.preprocess))
    path = folder / CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    # transformers' TimmWrapperForImageClassification passes num_classes=num_labels itself; a second
    # num_classes inside model_args makes timm.create_model fail with "multiple values for num_classes".
    model_args = {k: v for k, v in (config.get("model_args") or {}).items() if k != "num_classes"}
    if model_args:
        config["model_args"] = model_args
    else:
        config.pop("model_args", None)
    for key in FOREIGN_CFG_KEYS:
        config["pretrained_cfg"].pop(key, None)
    config[IMGCLS_SECTION] = section
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def image_processor(pre: Preprocess) -> Any:
    """A transformers image processor doing imgcls's eval preprocessing: shorter side resized to
    ``resize_size``, centre crop of ``img_size``, the model's mean and std (BiT's processor does exactly that)."""
    from transformers import BitImageProcessor

    return BitImageProcessor(size={"shortest_edge": pre.resize_size},
                             crop_size={"height": pre.img_size, "width": pre.img_size},
                             resample=PIL_CODES.get(pre.interpolation, 2), image_mean=list(pre.mean),
                             image_std=list(pre.std), do_center_crop=True, do_normalize=True)


def write_transformers_folder(model: nn.Module, checkpoint: LoadedCheckpoint, section: dict[str, Any],
                              folder: Path) -> None:
    from imgcls.models.hf import to_transformers

    hf_model = to_transformers(model, list(checkpoint.classes))
    setattr(hf_model.config, IMGCLS_SECTION, section)
    hf_model.save_pretrained(str(folder), safe_serialization=True)
    image_processor(checkpoint.preprocess).save_pretrained(str(folder))


def write_hf_folder(checkpoint: LoadedCheckpoint, meta: ExportMeta, folder: Path) -> str:
    """Write the folder's model files; returns the library that loads it ("timm" or "transformers")."""
    library = check_exportable(checkpoint)
    section = imgcls_section(meta, checkpoint.info)
    folder.mkdir(parents=True, exist_ok=True)
    model = fold_temperature(checkpoint.build(), section)
    if library == "timm":
        write_timm_folder(model, checkpoint, section, folder)
    else:
        write_transformers_folder(model, checkpoint, section, folder)
    return library
