"""Folder prediction throughput: imgcls (torch and onnx backends) vs a per-image loop as the seeds write it.

    python benchmarks/predict_folder.py [--model RUN] [--images DIR] [--repeat 2]

The loop: ``Image.open -> convert('RGB') -> transform -> model(x.unsqueeze(0))`` under ``torch.no_grad()``,
one photo at a time (seed 001's infer.py). The same model, the same preprocessing (read from the
checkpoint), the same images; top-1 labels are compared so a fast wrong answer cannot win. Without
--model a one-epoch efficientnet_lite0 feature-extraction run on examples/ants_bees is trained first.
Figures on a shared machine are noisy: compare the columns of one run, not runs with each other.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from imgcls import Classifier
from imgcls.inference.predictor import Predictor, expand_image_paths
from imgcls.models.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def per_image_loop(checkpoint_path: Path, paths: list[str]) -> list[str]:
    """The seeds' way: one image at a time, torchvision transforms, no batching."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build().eval()
    pre = checkpoint.preprocess
    transform = transforms.Compose([
        transforms.Resize(pre.resize_size, interpolation=pre.interpolation_mode),
        transforms.CenterCrop(pre.img_size),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])
    labels = []
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            probs = torch.softmax(model(transform(image).unsqueeze(0)), dim=1)[0]
            labels.append(checkpoint.classes[int(probs.argmax())])
    return labels


def timed(run, repeat: int) -> tuple[float, list[str]]:  # noqa: ANN001
    best, labels = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        labels = run()
        best = min(best, time.perf_counter() - start)
    return best, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="run directory (default: train a 1-epoch efficientnet_lite0 run)")
    parser.add_argument("--images", type=Path, default=REPO / "examples" / "ants_bees", help="folder of images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per method")
    parser.add_argument("--int8", action="store_true", help="also time an int8 ONNX export")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imgcls-bench-"))
    run = args.model or Classifier.train(args.images, strategy="feature-extraction", epochs=1, out=work,
                                         name="bench").path
    classifier = Classifier.load(run)
    checkpoint = classifier.predictor.source
    exports = {"onnx": classifier.export("onnx", out=work / "model.onnx")["path"]}
    if args.int8:
        exports["onnx int8"] = classifier.export("onnx", quantize="int8", out=work / "model.int8.onnx")["path"]
    paths = expand_image_paths([args.images])
    warm = paths[:8]
    print(f"model {checkpoint} ({classifier.predictor.info.get('arch')}), {len(paths)} images from {args.images}, "
          f"batch {args.batch_size}, {torch.get_num_threads()} torch threads")

    per_image_loop(checkpoint, warm)
    base_s, base_labels = timed(lambda: per_image_loop(checkpoint, paths), args.repeat)
    rows = [("per-image loop (seeds)", base_s, 1.0, 1.0)]
    for name, model_path in [("imgcls torch", checkpoint), *exports.items()]:
        predictor = Predictor.load(model_path)
        predictor.predict(warm, batch_size=args.batch_size)
        seconds, labels = timed(lambda p=predictor: [r.label for r in p.predict(paths, batch_size=args.batch_size)],
                                args.repeat)
        same = sum(a == b for a, b in zip(labels, base_labels)) / len(paths)
        rows.append((f"imgcls {name}" if not name.startswith("imgcls") else name, seconds, base_s / seconds, same))

    print(f"\n{'method':28} {'seconds':>8} {'images/s':>9} {'speed-up':>9} {'same top-1':>11}")
    for name, seconds, speedup, same in rows:
        print(f"{name:28} {seconds:8.2f} {len(paths) / seconds:9.1f} {speedup:8.1f}x {same:10.1%}")


if __name__ == "__main__":
    main()
