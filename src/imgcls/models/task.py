"""Which task a model was trained for, as its checkpoint or export metadata says (light: no torch import)."""

from __future__ import annotations

from typing import Any

MULTILABEL = "multilabel"


def is_multilabel(info: dict[str, Any]) -> bool:
    """Whether checkpoint or export metadata describes a multi-label model (one sigmoid per class)."""
    return info.get("task") == MULTILABEL
