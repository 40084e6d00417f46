"""Answers people can trust: calibration and "unknown" answers, measured end to end.

    python benchmarks/trust.py [DATA] [--ood examples/ood] [--epochs 5] [--digits]

Trains with zero flags on DATA (the --auto search: on photos, a head on efficientnet_lite2's features; default
DATA: the bundled ants/bees photos; the full-size originals are ../shared/datasets/hymenoptera_data), then
prints:
- calibration: the temperature, the val ECE before and after (after: 5-fold cross-fitted, the mean of ten
  fold assignments, so never measured on the images the temperature was fitted on); goal ECE <= 0.05;
- unknown answers on the --ood folder (pictures of none of the classes) and on the val photos, as
  `predict`, `evaluate --ood`, the HTTP server and the exported ONNX file each answer them; goals: >= 90 % of
  the folder unknown, >= 95 % of the val photos accepted;
- parity of the ONNX and TorchScript exports with PyTorch (probabilities and OOD scores).
With --digits it also trains a head on a generated 10-digit set (28 px renderings, 60 train / 40 val per
digit) and prints its calibration: a data set of another kind, on which the ImageNet features are weak.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imgcls import Classifier  # noqa: E402
from imgcls.models.checkpoint import load_checkpoint  # noqa: E402


def share(flags: list[bool]) -> str:
    return f"{sum(flags)}/{len(flags)} = {sum(flags) / max(1, len(flags)):.1%}"


def calibration_line(run: Path) -> str:
    c = load_checkpoint(run / "best.pt").info.get("calibration") or {}
    return (f"temperature {c.get('temperature', 1.0):.3f} fitted on {c.get('fitted_on')}: "
            f"ECE before {c.get('ece_before', float('nan')):.4f}, after {c.get('ece', float('nan')):.4f}")


def served(clf: Classifier, folder: Path) -> list[bool]:
    from fastapi.testclient import TestClient

    from imgcls.inference.predictor import expand_image_paths
    from imgcls.serve.app import create_app

    answers = []
    with TestClient(create_app(clf.predictor)) as client:
        for path in expand_image_paths([folder]):
            with open(path, "rb") as handle:
                answers.append(client.post("/predict", files={"file": (Path(path).name, handle)}).json()["unknown"])
    return answers


def ants_bees(data: str, ood: Path, epochs: int, out: Path) -> None:
    clf = Classifier.train(data, epochs=epochs, out=str(out), name="trust", workers=0)
    val = Path(clf.run.read_config()["data"]) / "val"
    print(f"data {data}: best val acc {clf.run.read_metrics()['best_val_acc']:.4f}")
    print(f"calibration: {calibration_line(clf.path)}")
    predicted_ood = [r["unknown"] for r in clf.predict(ood)]
    predicted_val = [not r["unknown"] for r in clf.predict(val)]
    print(f"predict:        unknown {share(predicted_ood)} of {ood}; accepted {share(predicted_val)} of val")
    metrics = clf.evaluate(ood=ood)
    o = metrics["ood"]
    print(f"evaluate --ood: rejected {o['rejected']:.1%} of {o['images']}, accepted {o['accepted_known']:.1%} "
          f"of {o['known_images']} val, AUROC {o['auroc']:.4f}; per folder "
          + ", ".join(f"{k} {v['rejected']:.0%}" for k, v in o["per_folder"].items()))
    print(f"serve:          unknown {share(served(clf, ood))} of {ood}; accepted "
          f"{share([not u for u in served(clf, val)])} of val")
    for fmt in ("onnx", "torchscript"):
        result = clf.export(fmt)
        p = result["parity"]
        print(f"export {fmt}: max |diff| probabilities {p['max_abs_diff']:.2g}, OOD scores "
              f"{p['ood_max_abs_diff']:.2g}, same top-1 {p['top1_agreement']:.1%}")
        if fmt == "onnx":
            exported = Classifier.load(result["path"])
            print(f"predict {fmt}:   unknown {share([r['unknown'] for r in exported.predict(ood)])} of {ood}; "
                  f"accepted {share([not r['unknown'] for r in exported.predict(val)])} of val")


def digits(out: Path) -> None:
    from tests.training.digits import make_digits

    data = make_digits(out / "digits", train=60, val=40)
    clf = Classifier.train(str(data), strategy="feature-extraction", epochs=10, hflip=False, out=str(out),
                           name="digits", workers=0)
    print(f"digits (efficientnet_lite0 feature extraction, 10 classes): best val acc "
          f"{clf.run.read_metrics()['best_val_acc']:.4f}; calibration: {calibration_line(clf.path)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(REPO / "examples" / "ants_bees"))
    parser.add_argument("--ood", type=Path, default=REPO / "examples" / "ood")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--digits", action="store_true", help="also a 10-digit set trained from scratch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ants_bees(args.data, args.ood, args.epochs, Path(tmp))
        if args.digits:
            digits(Path(tmp))


if __name__ == "__main__":
    main()
