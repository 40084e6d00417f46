"""Hugging Face folders written by ``imgcls export --format hf`` as MODEL: transformers runs the network,
imgcls does the decoding and preprocessing recorded in config.json's ``"imgcls"`` section."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from imgcls.errors import CheckpointError, first_line
from imgcls.models.metadata import META_KEY, ExportMeta
from imgcls.models.temperature import temperature_of

HF_CONFIG = "config.json"


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / HF_CONFIG).is_file()


class _Logits(nn.Module):
    """The transformers model's logits, divided by the calibration temperature the folder records."""

    def __init__(self, model: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits / self.temperature


def read_meta(folder: Path) -> ExportMeta:
    """The imgcls section of a folder's config.json; :class:`CheckpointError` for a foreign or damaged folder."""
    try:
        config = json.loads((folder / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{folder / HF_CONFIG} is not readable JSON ({first_line(exc, 80)}); "
                              f"export the run again with `imgcls export RUN --format hf`") from None
    section = config.get(META_KEY) if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise CheckpointError(f"{folder} is a Hugging Face folder without imgcls metadata (no \"imgcls\" section in "
                              f"config.json); load it with transformers, or train on it with --model hf:{folder}")
    return ExportMeta.from_json(json.dumps(section), folder)


def load_hf_folder(path: Path, device: str = "cpu"):  # noqa: ANN201 - LoadedModel
    from imgcls.inference.backend import LoadedModel, TorchBackend
    from imgcls.models.hf import _transformers

    meta = read_meta(path)
    transformers = _transformers()
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - transformers raises many error types on damaged folders
        raise CheckpointError(f"{path}: transformers cannot load it ({type(exc).__name__}: {first_line(exc)}); "
                              f"export the run again with `imgcls export RUN --format hf`") from None
    return LoadedModel(TorchBackend(_Logits(model, temperature_of(meta.info)), device, name="transformers"), meta.classes, meta.preprocess,
                       meta.info_for_predictor())
