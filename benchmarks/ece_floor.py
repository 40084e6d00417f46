"""How low can a run's ECE be measured on its own val split? A run's ECE beside the ECE a perfectly
calibrated model with the same confidences shows on as many images (sampling noise alone).

    python benchmarks/ece_floor.py RUN [RUN ...] [--draws 2000]

For each run: val images, accuracy, ECE of its calibrated scores (10 bins, as imgcls reports it; the
temperature fitted on these same images), and the mean and 90th percentile ECE of a model whose answers are
right with exactly the probability it states, drawn ``--draws`` times. A measured ECE near that floor is as
calibrated as this many val images can show.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from imgcls import Classifier
from imgcls.data.source import data_for
from imgcls.evaluation.calibration import calibration
from imgcls.evaluation.evaluate import evaluate_predictor


def floor(probs: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    predicted, confidence = probs.argmax(1), probs.max(1)
    other = (predicted + 1) % probs.shape[1]
    return np.array([calibration(np.where(rng.random(len(probs)) < confidence, predicted, other), probs).ece
                     for _ in range(draws)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'run':28} {'val':>5} {'acc':>6} {'ECE':>7} {'floor mean':>11} {'floor p90':>10}")
    for run in args.runs:
        evaluation = evaluate_predictor(Classifier.load(run).predictor, data_for(run, None), "val", workers=0)
        probs, labels = np.asarray(evaluation.probs), np.asarray(evaluation.labels)
        noise = floor(probs, args.draws)
        print(f"{run.name:28} {len(labels):5d} {(probs.argmax(1) == labels).mean():6.3f} "
              f"{calibration(labels, probs).ece:7.4f} {noise.mean():11.4f} {np.percentile(noise, 90):10.4f}")


if __name__ == "__main__":
    main()
