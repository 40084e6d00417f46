"""What a model file carries besides its weights: class names, preprocessing, the network and provenance.

Checkpoints (``.pt``) keep it as their ``"imgcls"`` entry (:func:`checkpoint_meta`). Exported files keep
it as JSON (:class:`ExportMeta`): ONNX files as a ``metadata_props`` entry, TorchScript files as an extra
file inside the archive, so a ``.onnx`` or ``.ts`` file alone is enough to predict, evaluate and serve --
no run directory, no flags. The layout of both is in docs/run-directory.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgcls.data.presets import Preprocess
from imgcls.errors import CheckpointError

if TYPE_CHECKING:
    from imgcls.models.factory import ModelSpec

CHECKPOINT_FORMAT = "imgcls"  # the checkpoint's entry, and its "format"
CHECKPOINT_VERSION = 1
META_KEY = "imgcls"  # ONNX metadata_props key
TORCHSCRIPT_EXTRA = "imgcls.json"  # TorchScript _extra_files name
FORMAT = "imgcls-export"
VERSION = 1
INPUT_NAME, OUTPUT_NAME = "image", "logits"
OOD_OUTPUT_NAME = "ood_score"  # second output of calibrated models: higher = less like the training data


def checkpoint_meta(spec: ModelSpec, classes: list[str], preprocess: Preprocess, **extra: Any) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": spec.to_dict(),
            "classes": list(classes), "preprocess": preprocess.to_dict(), **extra}


@dataclass
class ExportMeta:
    classes: list[str]
    preprocess: Preprocess
    model: dict[str, Any]  # ModelSpec.to_dict() of the source checkpoint
    info: dict[str, Any] = field(default_factory=dict)  # format, quantization, source checkpoint...

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "classes": self.classes,
                           "preprocess": self.preprocess.to_dict(), "model": self.model, **self.info},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes | None, path: str | Path) -> ExportMeta:
        """Parse what an exported file carries; :class:`CheckpointError` when it is missing or damaged."""
        if not text:
            raise CheckpointError(f"{path} carries no imgcls metadata (class names, preprocessing); "
                                  f"export it with `imgcls export RUN --format onnx|torchscript|openvino`")
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            if int(data.get("version", 0)) > VERSION:
                raise CheckpointError(f"{path} was exported by a newer imgcls (version {data['version']}); "
                                      f"upgrade imgcls to load it")
            classes = [str(c) for c in data["classes"]]
            preprocess = Preprocess.from_dict(data["preprocess"])
            model = dict(data.get("model") or {})
        except CheckpointError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: its imgcls metadata is damaged ({exc}); export the run again") from None
        info = {k: v for k, v in data.items() if k not in {"format", "version", "classes", "preprocess", "model"}}
        return cls(classes, preprocess, model, info)

    def info_for_predictor(self) -> dict[str, Any]:
        return {"arch": self.model.get("arch"), "model": self.model.get("name"), **self.info}
