"""``imgcls evaluate --ood DIR``: how well the model's "unknown" answer separates a folder of pictures of none of
its classes from the known images of the evaluated split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgcls.errors import DataError
from imgcls.inference.predictor import Predictor


@dataclass
class OodEvaluation:
    folder: str
    method: str
    threshold: float
    images: int  # pictures in the folder that could be read
    known_images: int
    auroc: float  # of the OOD score, out-of-class pictures as positives: 1 separates perfectly, 0.5 is chance
    rejected: float  # share of the folder's pictures answered "unknown"
    accepted_known: float  # share of the split's known images not answered "unknown"
    per_folder: dict[str, dict[str, float]] = field(default_factory=dict)  # {"images", "rejected"} per subfolder

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "method": self.method, "threshold": round(self.threshold, 6),
                "images": self.images, "known_images": self.known_images, "auroc": round(self.auroc, 6),
                "rejected": round(self.rejected, 6), "accepted_known": round(self.accepted_known, 6),
                "per_folder": self.per_folder}


def evaluate_ood(predictor: Predictor, known_scores: np.ndarray | None, folder: str | Path,
                 batch_size: int = 32) -> OodEvaluation:
    """Score every picture of ``folder`` and compare with ``known_scores`` (the evaluated split's)."""
    from sklearn.metrics import roc_auc_score

    ood = predictor.info.get("ood") or {}
    if known_scores is None or not ood:
        raise DataError(f"{predictor.source} has no out-of-distribution score (it was trained by an older imgcls); "
                        f"train it again to evaluate --ood")
    if predictor.threshold is None:
        raise DataError("--ood needs the unknown answer; drop --no-reject")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"--ood {folder}: not a folder; give a folder of pictures of none of the model's classes")
    predictions = predictor.predict(folder, topk=1, batch_size=batch_size)
    scores = np.array([p.ood_score for p in predictions], dtype=np.float64)
    unknown = np.array([p.unknown for p in predictions])
    known = np.asarray(known_scores, dtype=np.float64)
    auroc = float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(scores))], np.r_[known, scores]))
    groups: dict[str, list[bool]] = {}
    for prediction, is_unknown in zip(predictions, unknown):
        parts = Path(prediction.path).relative_to(folder).parts
        groups.setdefault(parts[0] if len(parts) > 1 else ".", []).append(bool(is_unknown))
    per_folder = ({name: {"images": len(flags), "rejected": round(float(np.mean(flags)), 6)}
                   for name, flags in sorted(groups.items())} if len(groups) > 1 else {})
    return OodEvaluation(str(folder), str(ood.get("method")), float(predictor.threshold), len(predictions),
                         len(known), auroc, float(unknown.mean()), float((known <= predictor.threshold).mean()),
                         per_folder)
