"""Two report sections that look past the metrics: where the model looked on its worst mistakes
(Grad-CAM overlays) and the training images whose label is probably wrong."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

from PIL import Image

from imgcls.errors import ImgclsError
from imgcls.evaluation import html as h
from imgcls.evaluation.evaluate import Evaluation
from imgcls.evaluation.gallery import THUMB_SIZE, ShownImage, file_thumbnail
from imgcls.inference.explain import explainer_for

log = logging.getLogger(__name__)

OVERLAY_SIZE = 128  # pixels: larger than the thumbnails, so the heat map reads


def _uri(image: Image.Image, size: int) -> str:
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def add_overlays(evaluation: Evaluation, model: Path, shown: list[ShownImage]) -> None:
    """Set each shown image's Grad-CAM overlay (for its predicted class), when ``model`` is a PyTorch
    checkpoint; other model files (exported graphs) keep their thumbnails alone."""
    if not shown or model.suffix.lower() not in (".pt", ".pth", ".ckpt"):
        return
    try:
        explainer = explainer_for(model)
    except ImgclsError as exc:
        log.info("report: no Grad-CAM overlays (%s)", exc)
        return
    images, kept = [], []
    for item in shown:
        if evaluation.images is not None:
            images.append(Image.fromarray(evaluation.images[item.index]))
        else:
            image = file_thumbnail(item.path, explainer.preprocess.resize_size)
            if image is None:
                continue
            images.append(image)
        kept.append(item)
    try:
        explanations = explainer.explain_images(images, [i.name for i in kept])
    except RuntimeError as exc:  # a network Grad-CAM cannot hook into must not cost the run its report
        log.warning("report: no Grad-CAM overlays (%s: %s)", type(exc).__name__, str(exc).splitlines()[0][:160])
        return
    for item, explanation in zip(kept, explanations):
        item.overlay = _uri(explanation.overlay, OVERLAY_SIZE)


def suspects_section(suspects: list[dict[str, Any]] | None) -> str:
    """Training images whose label is probably wrong, worst first, with thumbnails."""
    if suspects is None:
        return ""
    parts = [h.heading("Suspect labels", "라벨이 의심되는 학습 이미지")]
    if not suspects:
        return "".join(parts + [h.note("No training image looks like another class than its folder says.")])
    parts.append(h.note(f"{len(suspects)} training images look like another class than their folder says, most "
                        f"doubtful first (cross-validated heads on the cached embeddings, then cleanlab). Look at "
                        f"each: move it to the likely class's folder if it is one. Score: out-of-fold probability "
                        f"of the likely class. `imgcls doctor DATA --labels` lists them too."))
    figures = []
    for s in suspects:
        image = file_thumbnail(s["path"], THUMB_SIZE)
        picture = (f"<img alt='{h.esc(Path(s['path']).name)}' src='{_uri(image, THUMB_SIZE)}'>" if image
                   else "<div class='missing'>unreadable</div>")
        figures.append(f"<figure class='wrong' title='{h.esc(s['path'])}'>{picture}<figcaption>"
                       f"<b>likely {h.esc(s['likely'])} {h.percent(s['likely_prob'])}</b>given: {h.esc(s['given'])}"
                       f"<div class='file'>{h.esc(Path(s['path']).name)}</div></figcaption></figure>")
    return "".join(parts) + f"<div class='gallery'>{''.join(figures)}</div>"
