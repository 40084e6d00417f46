"""The README.md model card of a Hugging Face folder: classes, data, metrics and how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgcls.export.parity import Parity
from imgcls.rundir import RunDir


def _run_facts(run: RunDir | None) -> tuple[list[str], list[str]]:
    """(data lines, metric lines) from the run directory, when the checkpoint came from one."""
    data, metrics = [], []
    if run is None:
        return ["- not recorded (the model was exported from a checkpoint outside a run directory)"], metrics
    try:
        config = run.read_config()
    except Exception:  # noqa: BLE001 - a card without the data section beats no export
        config = {}
    if config.get("data"):
        data.append(f"- data: `{config['data']}`")
    for key in ("model", "strategy", "epochs", "img_size", "lr"):
        if config.get(key) is not None:
            data.append(f"- {key}: `{config[key]}`")
    try:
        recorded = run.read_metrics()
    except Exception:  # noqa: BLE001
        recorded = {}
    if "best_val_acc" in recorded:
        metrics.append(f"- best validation accuracy: {recorded['best_val_acc']:.4f} (epoch {recorded.get('best_epoch')})")
    evaluation = run.file("evaluation.json")
    if evaluation.is_file():
        try:
            import json

            values = json.loads(evaluation.read_text(encoding="utf-8"))
            for key in ("accuracy", "macro_f1", "top5"):
                if isinstance(values.get(key), (int, float)):
                    metrics.append(f"- {key} (imgcls evaluate): {values[key]:.4f}")
        except (OSError, ValueError):
            pass
    return data or ["- not recorded"], metrics


def model_card(*, name: str, library: str, classes: list[str], section: dict[str, Any], run: RunDir | None,
               parity: Parity, predict_parity: Parity | None, checked_on: str) -> str:
    data, metrics = _run_facts(run)
    metrics.append(f"- this folder through transformers vs imgcls on {checked_on} (the same decoded photos): same "
                   f"top-1 on {parity.top1_agreement:.1%}, probabilities within {parity.max_abs_diff:.3g}")
    if predict_parity is not None:
        metrics.append(f"- vs `imgcls predict` (which decodes large JPEGs at a reduced scale, for speed): same top-1 "
                       f"on {predict_parity.top1_agreement:.1%}, probabilities within {predict_parity.max_abs_diff:.3g}")
    if parity.accuracy is not None:
        metrics.append(f"- accuracy of this folder through transformers on {checked_on}: {parity.accuracy:.4f}")
    pre = section["preprocess"]
    calibration = section.get("calibration") or {}
    ood = section.get("ood") or {}
    timm_lines = ["", "```python", "import timm", "import torch", "",
                  'model = timm.create_model("local-dir:DIR", pretrained=True).eval()',
                  "config = timm.data.resolve_data_config({}, model=model)",
                  "transform = timm.data.create_transform(**config)",
                  "with torch.no_grad():",
                  "    probs = model(transform(image).unsqueeze(0)).softmax(-1)",
                  "labels = model.pretrained_cfg[\"label_names\"]", "```"] if library == "timm" else []
    lines = [
        "---",
        f"library_name: {library}",
        "pipeline_tag: image-classification",
        "tags: [imgcls, image-classification]",
        "---",
        "",
        f"# {name}",
        "",
        "An image classifier trained with imgcls and exported with "
        "`imgcls export RUN --format hf`.",
        "",
        "## Classes",
        "",
        "| id | label |", "|---|---|",
        *[f"| {i} | {c} |" for i, c in enumerate(classes)],
        "",
        "## Data and training",
        "",
        *data,
        "",
        "## Metrics",
        "",
        *metrics,
        "",
        "## Preprocessing",
        "",
        f"Shorter side resized to {int(pre['img_size'] / pre['crop_pct'])} px ({pre['interpolation']}), "
        f"centre crop {pre['img_size']} px, mean {pre['mean']}, std {pre['std']}.",
        "",
        "## How to load it (offline, DIR = this folder)",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        'classify = pipeline("image-classification", model="DIR")',
        'print(classify("photo.jpg"))   # [{"label": ..., "score": ...}, ...]',
        "```",
        *timm_lines,
        "",
        "imgcls itself: `imgcls predict RUN photo.jpg` with the run this folder was exported from.",
    ]
    if calibration.get("temperature") and calibration.get("in_weights"):
        lines += ["", "## Calibration", "",
                  f"The classifier's weights already include imgcls's calibration temperature "
                  f"({float(calibration['temperature']):.4g}, fitted on validation data): the scores of any client, "
                  f"a transformers pipeline included, are the calibrated ones imgcls gives."]
    elif calibration.get("temperature"):
        temperature = float(calibration["temperature"])
        lines += ["", "## Calibration", "",
                  f"imgcls divides the logits by a temperature of {temperature:.4g} (fitted on validation data) "
                  f"so that scores match how often the model is right. A transformers pipeline applies no "
                  f"temperature; to get imgcls's scores, run the model yourself:", "",
                  "```python", "import json, torch",
                  "from transformers import AutoImageProcessor, AutoModelForImageClassification", "",
                  'model = AutoModelForImageClassification.from_pretrained("DIR").eval()',
                  'processor = AutoImageProcessor.from_pretrained("DIR")',
                  'temperature = json.load(open("DIR/config.json"))["imgcls"]["calibration"]["temperature"]',
                  "with torch.no_grad():",
                  '    logits = model(**processor(image, return_tensors="pt")).logits',
                  "probs = (logits / temperature).softmax(-1)", "```"]
    if ood:
        lines += ["", "## Unknown pictures", "",
                  f"imgcls answers \"unknown\" when its out-of-distribution score ({ood.get('method', '?')}) "
                  f"passes {ood.get('threshold')}; the settings are in config.json under `imgcls.ood`. "
                  f"A pipeline always answers one of the classes."]
    return "\n".join(lines) + "\n"


def write_model_card(folder: Path, text: str) -> None:
    (Path(folder) / "README.md").write_text(text, encoding="utf-8")
