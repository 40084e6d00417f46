"""Options that can be used together train together: a pairwise matrix (every pair of values of any two
options appears in some run) over strategy, decoded cache, EMA, Mixup/CutMix and balance.

Tiny images keep it cheap; they are larger than the input, so the decoded cache holds real uint8 crops.
benchmarks/combinations.py runs the wider matrix that is too slow for here (models from timm, hf: and scratch
nets, --devices 2, precision, lr-find), each case the real command on full-size photos.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from imgcls.config import load_train_config
from imgcls.training.fit import train
from tests.helpers import make_train_val

OPTIONS: dict[str, list[object]] = {
    "strategy": ["feature-extraction", "finetune", "staged", "scratch"],
    "mix": ["none", "mixup", "cutmix"],
    "balance": ["none", "sampler", "loss"],
    "cache": ["on", "off"],
    "ema": [False, True],
}
# benchmarks/combinations.py's matrix: each case the real command, on full-size photos
SCRATCH_NETS = ["small_cnn", "resnet_cifar"]
WIDER = {**OPTIONS, "model": ["efficientnet_lite0", "hf", *SCRATCH_NETS], "devices": [1, 2],
         "precision": ["32", "bf16-mixed"], "lr": ["auto", "fixed"]}


def wider_allowed(case: dict[str, object]) -> bool:
    """Nets without pretrained weights train only from scratch."""
    return case["model"] not in SCRATCH_NETS or case["strategy"] == "scratch"


def pairwise(options: dict[str, list[object]],
             allowed: Callable[[dict[str, object]], bool] = lambda row: True) -> list[dict[str, object]]:
    """A small set of ``allowed`` rows covering every pair of values of every two options that some allowed
    row holds (greedy, deterministic)."""
    names = list(options)
    rows_allowed = [values for values in (dict(zip(names, row)) for row in itertools.product(*options.values()))
                    if allowed(values)]
    uncovered = {(a, row[a], b, row[b]) for row in rows_allowed for a, b in itertools.combinations(names, 2)}
    rows = []
    while uncovered:
        best, best_gain = None, -1
        for values in rows_allowed:
            gain = sum((a, values[a], b, values[b]) in uncovered for a, b in itertools.combinations(names, 2))
            if gain > best_gain:
                best, best_gain = values, gain
        rows.append(best)
        uncovered -= {(a, best[a], b, best[b]) for a, b in itertools.combinations(names, 2)}
    return rows


CASES = pairwise(OPTIONS)


def test_the_matrix_covers_every_pair() -> None:
    for options, allowed, most in ((OPTIONS, lambda row: True, 16), (WIDER, wider_allowed, 24)):
        cases = pairwise(options, allowed)
        possible = [dict(zip(options, row)) for row in itertools.product(*options.values())]
        for a, b in itertools.combinations(options, 2):
            seen = {(case[a], case[b]) for case in cases}
            assert seen == {(row[a], row[b]) for row in possible if allowed(row)}, (a, b)
        assert all(allowed(case) for case in cases) and len(cases) <= most


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_train_val(tmp_path_factory.mktemp("pairs"), ["checker", "stripes_h"], train=8, val=4, size=48)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_options_train_together(case: dict[str, object], images: Path, tmp_path: Path) -> None:
    train_case(case, images, tmp_path)


def train_case(case: dict[str, object], images: Path, out: Path) -> None:
    scratch = case["strategy"] == "scratch"
    config = load_train_config(
        data=str(images), model="small_cnn" if scratch else "efficientnet_lite0", strategy=case["strategy"],
        img_size=32, epochs=2, batch_size=8, workers=0, out=str(out), logger=["none"], cache=case["cache"],
        precision=case.get("precision", "32"), lr="auto" if case.get("lr") == "auto" else None, ema=case["ema"],
        mixup=0.2 if case["mix"] == "mixup" else 0.0, cutmix=1.0 if case["mix"] == "cutmix" else 0.0,
        balance=case["balance"])
    run = train(config)
    metrics = run.read_metrics()
    assert len(metrics["epochs"]) == 2 and 0.0 <= metrics["best_val_acc"] <= 1.0
    assert (run.path / "best.pt").is_file() and (run.path / "report.html").is_file()
