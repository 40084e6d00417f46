"""Options that can be used together train together: a pairwise matrix (every pair of values of any two
options appears in some run) over strategy, decoded cache, EMA, Mixup/CutMix and balance.

Tiny images keep it cheap; they are larger than the input, so the decoded cache holds real uint8 crops.
benchmarks/combinations.py runs the wider matrix (precision and lr-find too) that is too slow for here.
"""

from __future__ import annotations

import itertools
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
WIDER = {**OPTIONS, "precision": ["32", "bf16-mixed"], "lr": ["auto", "fixed"]}


def pairwise(options: dict[str, list[object]]) -> list[dict[str, object]]:
    """A small set of rows covering every pair of values of every two options (greedy, deterministic)."""
    names = list(options)
    uncovered = {(a, va, b, vb) for a, b in itertools.combinations(names, 2)
                 for va in options[a] for vb in options[b]}
    rows = []
    while uncovered:
        best, best_gain = None, -1
        for row in itertools.product(*options.values()):
            values = dict(zip(names, row))
            gain = sum((a, values[a], b, values[b]) in uncovered for a, b in itertools.combinations(names, 2))
            if gain > best_gain:
                best, best_gain = values, gain
        rows.append(best)
        uncovered -= {(a, best[a], b, best[b]) for a, b in itertools.combinations(names, 2)}
    return rows


CASES = pairwise(OPTIONS)


def test_the_matrix_covers_every_pair() -> None:
    for options in (OPTIONS, WIDER):
        cases = pairwise(options)
        for a, b in itertools.combinations(options, 2):
            seen = {(case[a], case[b]) for case in cases}
            assert seen == set(itertools.product(options[a], options[b])), (a, b)
        assert len(cases) <= 16


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
