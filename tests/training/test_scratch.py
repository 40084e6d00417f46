"""From scratch: small_cnn learns tiny grayscale digits with no pretrained assumptions in the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from imgcls import Classifier
from imgcls.config import load_train_config
from imgcls.training.fit import train
from tests.training.digits import make_digits


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Four digits that do not look alike keep this fast; benchmarks/train_digits.py runs all ten.
    return make_digits(tmp_path_factory.mktemp("digits"), train=60, val=20, digits=[0, 1, 4, 7])


@pytest.mark.slow
def test_small_cnn_learns_digits_from_scratch(digits: Path, tmp_path: Path) -> None:
    # No flips (a mirrored 7 is no digit) and no crops that cut strokes off: --augment none --no-hflip.
    config = load_train_config(data=str(digits), model="small_cnn", epochs=8, batch_size=16, lr=3e-3, workers=0,
                               augment="none", hflip=False, out=str(tmp_path), name="digits")
    run = train(config).path
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_val_acc"] >= 0.95
    used = yaml.safe_load((run / "config.yaml").read_text())
    assert used["strategy"] == "scratch" and used["pretrained"] is False and used["img_size"] == 32
    checkpoint = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert checkpoint["imgcls"]["preprocess"]["mean"] == [0.5, 0.5, 0.5]  # not ImageNet's statistics
    assert Classifier.load(run).evaluate()["accuracy"] == pytest.approx(metrics["best_val_acc"])
