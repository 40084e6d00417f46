"""What a report costs next to the evaluation it reports on.

    python benchmarks/evaluation_report.py RUN_DIR [--split val] [--repeat 3]

Prints, side by side, the seconds of: the evaluation pass (the baseline), the same pass decoding in
the main process as before (workers=0), with --tta, and each part of writing the report (pictures,
thumbnails, the embedded Hangul font, the HTML), plus the size of report.html. Goals: the report adds
a small fraction to the evaluation; report.html stays well under 1 MB.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgcls.data.source import data_for
from imgcls.evaluation.evaluate import evaluate_predictor
from imgcls.evaluation.fonts import font_face_css
from imgcls.evaluation.gallery import sample_predictions, shown_images, worst_mistakes
from imgcls.evaluation.plots import plot_confusion, plot_curves, plot_reliability
from imgcls.evaluation.report import write_report
from imgcls.inference.predictor import Predictor
from imgcls.rundir import RunDir


def timed(step: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds over ``repeat`` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    run = RunDir.open(args.run)
    predictor, source = Predictor.load(run.best_checkpoint), data_for(run.path, None)
    base, evaluation = timed(lambda: evaluate_predictor(predictor, source, args.split), args.repeat)
    serial, _ = timed(lambda: evaluate_predictor(predictor, source, args.split, workers=0), args.repeat)
    tta, _ = timed(lambda: evaluate_predictor(predictor, source, args.split, tta=True), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        parts = {
            "pictures (3 PNGs)": lambda: (plot_curves(run.read_metrics()["epochs"], out / "c.png"),
                                          plot_confusion(evaluation.metrics["confusion_matrix"], evaluation.classes,
                                                         out / "m.png"),
                                          plot_reliability(evaluation.calibration, out / "r.png")),
            "thumbnails (galleries)": lambda: shown_images(evaluation, worst_mistakes(evaluation)
                                                           + sample_predictions(evaluation)),
            "Hangul font subset": lambda: font_face_css("클래스별 성능 혼동 행렬 " + "".join(evaluation.classes)),
            "whole report": lambda: write_report(out / "report", evaluation, run.best_checkpoint, source, run),
        }
        timings = {name: timed(step, args.repeat)[0] for name, step in parts.items()}
        size = (out / "report" / "report.html").stat().st_size

    n = len(evaluation.labels)
    print(f"run {run.path.name}: {n} {args.split} images, {len(evaluation.classes)} classes, "
          f"median of {args.repeat}")
    print(f"{'step':29} {'seconds':>8} {'vs evaluation':>14}")
    print(f"{'evaluation pass (baseline)':29} {base:8.2f} {'1.00x':>14}")
    print(f"{'evaluation, no loader workers':29} {serial:8.2f} {serial / base:13.2f}x")
    print(f"{'evaluation pass with --tta':29} {tta:8.2f} {tta / base:13.2f}x")
    for name, seconds in timings.items():
        print(f"{name:29} {seconds:8.2f} {seconds / base:13.2f}x")
    print(f"report.html: {size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
