"""Exports of the session's tiny run, made once: the export tests read these files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def export_summaries(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``{"onnx": summary, "torchscript": summary, "openvino": summary}`` of exporting a copy of tiny_run
    (best.onnx, best.ts, best.xml + best.bin land in the copy, so the shared run stays as training left it)."""
    from imgcls.export.exporter import export_model

    run = tmp_path_factory.mktemp("exported") / "tiny"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("logs", "last.pt"))
    return {fmt: export_model(run, fmt).to_dict() for fmt in ("onnx", "torchscript", "openvino")}


@pytest.fixture(scope="session")
def exported_run(export_summaries: dict[str, dict[str, Any]]) -> Path:
    return Path(export_summaries["onnx"]["path"]).parent
