"""Learning-rate finder: Lightning's range test on the module and data train builds; plot, JSON, suggestion."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from imgcls.config import load_train_config
from imgcls.data.source import resolve_data
from imgcls.models.factory import create_model
from imgcls.training.lr_find import MAX_LR, MIN_LR, find_lr, lr_find, steepest_descent
from tests.helpers import make_train_val, run_main


def test_suggestion_is_the_steepest_fall_per_decade_before_the_minimum() -> None:
    lrs = [10 ** (-6 + 0.25 * i) for i in range(25)]  # 1e-6 .. 1
    # flat, a steep fall around 1e-3, a minimum near 1e-1, then divergence
    losses = [2.0 - 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 3))) for lr in lrs]
    losses[-3:] = [3.0, 6.0, 12.0]
    suggestion = steepest_descent(lrs, losses)
    assert suggestion is not None and 3e-4 < suggestion < 3e-3
    # A first smoothed loss lower than the rest (a lucky first batch) must not end the search at the start.
    assert steepest_descent(lrs, [0.3, *losses[1:]]) == suggestion
    assert steepest_descent(lrs[:6], losses[:6]) is None  # too few points
    assert steepest_descent(lrs, [float("nan")] * len(lrs)) is None


def test_range_test_on_train_pieces_leaves_the_weights_and_writes_plot(tiny_data: Path, tmp_path: Path) -> None:
    config = load_train_config(data=str(tiny_data), model="small_cnn", batch_size=16, workers=0, precision="32",
                               strategy="scratch", img_size=32, augment="light")
    source = resolve_data(config.data)
    created = create_model("small_cnn", len(source.classes), img_size=32)
    before = {k: v.clone() for k, v in created.model.state_dict().items()}
    finding = find_lr(config, source, created, out=tmp_path, steps=12)
    assert MIN_LR <= finding.suggestion <= MAX_LR and len(finding.lrs) == len(finding.losses) == 12
    assert finding.lrs == sorted(finding.lrs)  # the rate only grows
    for key, tensor in created.model.state_dict().items():
        assert torch.equal(tensor, before[key]), key  # Lightning restored the network
    assert (tmp_path / "lr_find.png").stat().st_size > 5000
    assert json.loads((tmp_path / "lr_find.json").read_text())["suggestion"] == pytest.approx(finding.suggestion)


@pytest.mark.slow
def test_cli_prints_the_suggestion_as_json(tiny_data: Path, tmp_path: Path) -> None:
    code, out, err = run_main("lr-find", str(tiny_data), "--model", "small_cnn", "--batch-size", "16", "--workers",
                              "0", "--steps", "12", "--out", str(tmp_path), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"suggestion", "strategy", "plot"} and result["strategy"] == "scratch"
    assert Path(result["plot"]).is_file()
    # stderr is no terminal here: plain lines, not Lightning's own tqdm bar of the range test
    assert "lr-find: 12 of 12 steps ran" in err and "Finding best initial lr" not in err and "\r" not in err


def test_bad_options_exit_2(tiny_data: Path, tmp_path: Path) -> None:
    code, _, err = run_main("lr-find", str(tiny_data), "--model", "no_such_net", "--out", str(tmp_path))
    assert code == 2 and "unknown model 'no_such_net'" in err
    code, _, err = run_main("train", str(tiny_data), "--lr", "fast", "--out", str(tmp_path))
    assert code == 2 and "--lr" in err and "auto" in err


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["feature-extraction", "finetune", "staged", "scratch"])
def test_every_strategy_on_images_large_enough_for_the_decoded_cache(strategy: str, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # 96 px pictures for a 64 px input: --cache auto decodes them once into uint8 pixels, which must be
    # normalised before they reach the network, in the range test as in training.
    data = make_train_val(tmp_path / "data", ["checker", "stripes_h"], train=12, val=4, size=96)
    model = "small_cnn" if strategy == "scratch" else "efficientnet_lite0"
    config = load_train_config(data=str(data), model=model, strategy=strategy, img_size=64, batch_size=8,
                               workers=0, precision="32")
    with caplog.at_level(logging.INFO, logger="imgcls"):
        finding = lr_find(config, tmp_path / "out", steps=16)
    assert MIN_LR <= finding.suggestion <= MAX_LR
    if strategy in ("finetune", "scratch"):
        assert "decoded-image cache: on" in caplog.text
