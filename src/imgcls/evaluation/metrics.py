"""Classification metrics in the shape of ``imgcls evaluate --json`` (docs/output.md)."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """accuracy, macro_f1, top5 (5+ classes), per_class {precision, recall, f1, support}, confusion_matrix.

    Rows of the confusion matrix are true classes, columns predicted, both in ``classes`` order.
    Macro F1 averages over the classes that occur (as true or predicted labels).
    """
    # Imported here: scikit-learn brings SciPy, 1.5 s that predict and serve (which load this package) never use.
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = np.asarray(labels, dtype=np.int64)
    preds = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    every = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=every, zero_division=0)
    result: dict[str, Any] = {
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)) if len(labels) else 0.0,
    }
    if len(classes) >= 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        result["top5"] = float((top5 == labels[:, None]).any(axis=1).mean()) if len(labels) else 0.0
    result["per_class"] = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(classes)
    }
    result["confusion_matrix"] = confusion_matrix(labels, preds, labels=every).tolist()
    return result
