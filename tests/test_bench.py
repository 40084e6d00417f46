"""imgcls bench: both throughputs, the bound, and advice that follows from them."""

from __future__ import annotations

import json
from pathlib import Path

from imgcls.config import load_train_config
from imgcls.training.bench import advice, describe
from tests.helpers import run_cli, run_main


def test_bench_json_names_both_throughputs_and_the_bound(tiny_data: Path) -> None:
    result = run_cli("bench", tiny_data, "--model", "small_cnn", "--json", "--workers", "0", "--batch-size", "8",
                     check=True)
    report = json.loads(result.stdout)  # stdout holds the JSON alone
    data, model = report["data"], report["model"]
    assert data["images_per_second"] > 0 and model["images_per_second"] > 0
    assert data["images"] >= 8 and data["workers"] == 0 and data["cache"] is False  # 32 px files: auto says off
    assert model["name"] == "small_cnn" and model["batch_size"] == 8 and model["img_size"] == 32
    slower = "data" if data["images_per_second"] < model["images_per_second"] else "model"
    assert report["bound"] == slower and report["advice"]


def test_bench_of_a_mistyped_model_is_a_user_error(tiny_data: Path) -> None:

    code, _, stderr = run_main("bench", str(tiny_data), "--model", "resnet_typo")
    assert code == 2 and "resnet_typo" in stderr and "Traceback" not in stderr


def _figures(data_speed: float, model_speed: float, cache: bool, device: str = "cpu") -> tuple[dict, dict]:
    data = {"images_per_second": data_speed, "cache": cache, "img_size": 224, "workers": 1, "batch_size": 32}
    model = {"images_per_second": model_speed, "device": device, "name": "m", "precision": "32",
             "strategy": "finetune"}
    return data, model


def test_advice_for_a_data_bound_run_starts_with_the_cache() -> None:
    config = load_train_config(data="x", workers=1, strategy="finetune", precision="32")
    data, model = _figures(40.0, 400.0, cache=False)
    tips = advice(config, data, model, image_files=True)
    assert tips[0].startswith("--cache on")
    assert not any("--cache" in tip for tip in advice(config, *_figures(40.0, 400.0, cache=True), image_files=True))
    text = describe({"data": data, "model": model, "bound": "data", "ratio": 0.1, "advice": tips})
    assert "bound: data" in text and "90%" in text


def test_advice_for_a_model_bound_run_is_about_the_model() -> None:
    config = load_train_config(data="x", workers=4, strategy="finetune", precision="32")
    cpu_tips = advice(config, *_figures(900.0, 30.0, cache=False), image_files=True)
    assert "GPU" in cpu_tips[0] and not any("--cache" in tip for tip in cpu_tips)
    gpu_tips = advice(config, *_figures(900.0, 300.0, cache=False, device="cuda"), image_files=True)
    assert gpu_tips[0].startswith("--precision bf16-mixed")
