"""``imgcls export --format hf``: a Hugging Face folder, checked through transformers itself.

The folder is written under a temporary name, loaded back with ``AutoModelForImageClassification`` and
``AutoImageProcessor`` (what ``pipeline("image-classification")`` uses), and both transformers and
imgcls classify the same val photos from their files, each with its own decoding and preprocessing.
Only a folder whose top-1 and probabilities agree takes the final name.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from imgcls.data.source import DataSource, label_map
from imgcls.errors import ExportError, first_line
from imgcls.rundir import RunDir
from imgcls.models.metadata import ExportMeta
from imgcls.export.model_card import model_card, write_model_card
from imgcls.export.parity import ExportResult, Parity, _spread
from imgcls.export.to_hf import CONFIG, IMGCLS_SECTION, write_hf_folder
from imgcls.inference.hf_folder_backend import read_meta
from imgcls.inference.predictor import Predictor
from imgcls.models.checkpoint import load_checkpoint
from imgcls.models.temperature import temperature_of

log = logging.getLogger(__name__)

MIN_TOP1_AGREEMENT = 0.99
RANDOM_IMAGES = 8
BATCH = 16


def default_folder(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}-hf")


def _target(checkpoint: Path, out: str | Path | None) -> Path:
    """``--out DIR`` or RUN/best-hf; an existing folder is replaced only when it is empty or an imgcls export."""
    target = default_folder(checkpoint) if out is None else Path(out).expanduser()
    if target.exists():
        if not target.is_dir():
            raise ExportError(f"--out {target} is a file; --format hf writes a folder: give a folder path")
        if any(target.iterdir()) and not is_imgcls_hf_folder(target):
            raise ExportError(f"--out {target} already holds files that are not an imgcls export; "
                              f"give an empty or new folder")
    return target


def is_imgcls_hf_folder(folder: Path) -> bool:
    try:
        return IMGCLS_SECTION in json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


class TransformersClassifier:
    """A Hugging Face folder run the way a pipeline runs it: transformers' image loading and processor."""

    def __init__(self, folder: Path, temperature: float = 1.0):
        from imgcls.models.hf import _transformers

        self.temperature = temperature  # a pipeline applies none; imgcls's calibrated scores divide by it

        transformers = _transformers()
        try:
            self.model = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
            self.processor = transformers.AutoImageProcessor.from_pretrained(str(folder))
        except Exception as exc:  # noqa: BLE001 - transformers raises many error types
            raise ExportError(f"transformers cannot load the exported folder ({type(exc).__name__}: "
                              f"{first_line(exc)}); export with --format onnx instead") from None
        labels = self.model.config.id2label
        self.classes = [labels[i] for i in range(len(labels))]

    @torch.inference_mode()
    def probabilities(self, images: list) -> np.ndarray:  # PIL images
        inputs = self.processor(images=images, return_tensors="pt")
        return torch.softmax(self.model(**inputs).logits.float() / self.temperature, dim=-1).numpy()


def _load_like_a_pipeline(path: str):  # noqa: ANN202 - PIL image
    from transformers.image_utils import load_image

    return load_image(path)


def _parity(ours: np.ndarray, theirs: np.ndarray, labels: np.ndarray | None) -> Parity:
    agree = float((ours.argmax(1) == theirs.argmax(1)).mean())
    accuracy = reference_accuracy = None
    if labels is not None:
        accuracy, reference_accuracy = float((theirs.argmax(1) == labels).mean()), float((ours.argmax(1) == labels).mean())
    return Parity(len(ours), float(np.abs(ours - theirs).max()), agree, accuracy, reference_accuracy)


def compare(folder: Path, reference: Predictor, source: DataSource | None, limit: int
            ) -> tuple[Parity, Parity | None, str]:
    """(check, against imgcls predict, what it ran on): imgcls and transformers on up to ``limit`` val photos
    (random pictures without data).

    The check gives imgcls the pictures transformers decodes (whole JPEGs) and so measures what the folder
    decides: weights, labels, resize, crop and normalisation. ``imgcls predict`` decodes large JPEGs at a
    reduced scale for speed, which moves its scores a little more; that figure is returned beside it."""
    exported = TransformersClassifier(folder, temperature_of(read_meta(folder).info))
    if exported.classes != reference.classes:
        raise ExportError(f"the exported folder's labels {exported.classes} are not the model's {reference.classes}")
    if source is None or "val" not in source.splits or not source.paths("val"):
        from PIL import Image

        rng = np.random.default_rng(0)
        size = reference.preprocess.resize_size
        images = [Image.fromarray(rng.integers(0, 256, (size + 7 * i, size + 3, 3), dtype=np.uint8))
                  for i in range(RANDOM_IMAGES)]
        check = _parity(reference.predict_images(images), exported.probabilities(images), None)
        return check, None, f"{len(images)} random pictures"
    paths, labels = source.paths("val"), np.array(source.labels("val"))
    remap = np.array(label_map(source.classes, reference.classes))
    chosen = _spread(len(paths), limit)
    paths, labels = [paths[i] for i in chosen], remap[labels[chosen]]
    predicted = np.zeros((len(paths), len(reference.classes)), dtype=np.float32)
    read = np.zeros(len(paths), dtype=bool)
    for indices, probs, _ in reference.iter_probabilities(paths):
        predicted[indices], read[indices] = probs, True
    kept = [i for i in range(len(paths)) if read[i]]
    ours, theirs = [], []
    for start in range(0, len(kept), BATCH):  # a batch of whole decoded photos at a time: they are large
        images = [_load_like_a_pipeline(paths[i]) for i in kept[start:start + BATCH]]
        ours.append(reference.predict_images(images))
        theirs.append(exported.probabilities(images))
    ours_all, theirs_all, labels = np.concatenate(ours), np.concatenate(theirs), labels[kept]
    return (_parity(ours_all, theirs_all, labels), _parity(predicted[kept], theirs_all, labels),
            f"{len(kept)} val images")


def export_hf(checkpoint_path: Path, out: str | Path | None, source: DataSource | None, tolerance: float,
              check_limit: int = 1000) -> ExportResult:
    from imgcls.version import __version__

    started = time.perf_counter()
    target = _target(checkpoint_path, out)
    checkpoint = load_checkpoint(checkpoint_path)
    meta = ExportMeta(checkpoint.classes, checkpoint.preprocess, checkpoint.spec.to_dict(),
                      {"exported_format": "hf", "quantization": "none", "source": str(checkpoint_path),
                       "epoch": checkpoint.info.get("epoch"), "imgcls_version": __version__})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        library = write_hf_folder(checkpoint, meta, tmp)
        log.info("exported %s as a Hugging Face folder (%s); checking it through transformers", checkpoint_path,
                 library)
        parity, predict_parity, checked_on = compare(tmp, Predictor.load(checkpoint_path), source, check_limit)
        if not (parity.max_abs_diff <= tolerance and parity.top1_agreement >= MIN_TOP1_AGREEMENT):
            raise ExportError(f"the hf export does not match imgcls through transformers on {checked_on}: same top-1 "
                              f"on {parity.top1_agreement:.1%} (needs {MIN_TOP1_AGREEMENT:.0%}), probabilities "
                              f"differ by up to {parity.max_abs_diff:.2g} (tolerance {tolerance:g}); "
                              f"export with --format onnx, or raise --tolerance if this is acceptable")
        run = RunDir.of(checkpoint_path)
        write_model_card(tmp, model_card(name=run.path.name if run else checkpoint_path.stem, library=library,
                                         classes=list(checkpoint.classes),
                                         section=json.loads(read_meta(tmp).to_json()), run=run, parity=parity,
                                         predict_parity=predict_parity, checked_on=checked_on))
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return ExportResult(target, "hf", None, size, time.perf_counter() - started, checked_on, tolerance, parity,
                        None, str(checkpoint_path), predict_parity)
