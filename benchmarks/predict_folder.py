"""Folder prediction throughput: imgcls (torch, onnx and openvino backends) vs a per-image loop as the seeds write it.

    python benchmarks/predict_folder.py [--model RUN] [--images DIR] [--repeat 2]

The loop: ``Image.open -> convert('RGB') -> transform -> model(x.unsqueeze(0))`` under ``torch.no_grad()``,
one photo at a time (seed 001's infer.py). The same model, the same preprocessing (read from the
checkpoint), the same images; top-1 labels are compared so a fast wrong answer cannot win. Each method
runs in its own process and is timed after a warm-up (start-up not included); the loop's process runs
untuned (IMGCLS_NO_TUNING=1: no malloc or OpenMP settings), as a script of the seeds would. Without
--model a one-epoch efficientnet_lite0 feature-extraction run on examples/ants_bees is trained first.
Figures on a shared machine are noisy: compare the columns of one run, not runs with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgcls.runtime import tune_process

tune_process()  # as the imgcls command does, before torch loads; the loop's process sets IMGCLS_NO_TUNING

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

from imgcls import Classifier  # noqa: E402
from imgcls.inference.predictor import Predictor, expand_image_paths  # noqa: E402
from imgcls.models.checkpoint import load_checkpoint  # noqa: E402

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


def measure(method: str, model: Path, images: Path, batch_size: int, repeat: int) -> dict:
    """One method's best-of-``repeat`` seconds over the folder, after a warm-up, in this process."""
    paths = expand_image_paths([images])
    if method == "loop":
        per_image_loop(model, paths[:8])
        seconds, labels = timed(lambda: per_image_loop(model, paths), repeat)
    else:
        predictor = Predictor.load(model)
        predictor.predict(paths[:8], batch_size=batch_size)
        seconds, labels = timed(lambda: [r.label for r in predictor.predict(paths, batch_size=batch_size)], repeat)
    return {"seconds": seconds, "labels": labels, "images": len(paths), "threads": torch.get_num_threads()}


def in_child(method: str, model: Path, args: argparse.Namespace) -> dict:
    """Each method in a fresh process; the loop untuned (IMGCLS_NO_TUNING), as a script of the seeds runs."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if method == "loop":
        env["IMGCLS_NO_TUNING"] = "1"
    command = [sys.executable, __file__, "--measure", method, "--model", str(model), "--images", str(args.images),
               "--batch-size", str(args.batch_size), "--repeat", str(args.repeat)]
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="run directory (default: train a 1-epoch efficientnet_lite0 run)")
    parser.add_argument("--images", type=Path, default=REPO / "examples" / "ants_bees", help="folder of images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per method")
    parser.add_argument("--int8", action="store_true", help="also time an int8 ONNX export")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a child process timing one method
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.model, args.images, args.batch_size, args.repeat)))
        return

    work = Path(tempfile.mkdtemp(prefix="imgcls-bench-"))
    run = args.model or Classifier.train(args.images, strategy="feature-extraction", epochs=1, out=work,
                                         name="bench").path
    classifier = Classifier.load(run)
    checkpoint = classifier.predictor.source
    methods = {"per-image loop (seeds)": ("loop", checkpoint), "imgcls torch": ("torch", checkpoint),
               "imgcls onnx": ("onnx", classifier.export("onnx", out=work / "model.onnx")["path"]),
               "imgcls openvino": ("openvino", classifier.export("openvino", out=work / "model.xml")["path"])}
    if args.int8:
        methods["imgcls onnx int8"] = ("onnx", classifier.export("onnx", quantize="int8",
                                                                 out=work / "model.int8.onnx")["path"])
    print(f"model {checkpoint} ({classifier.predictor.info.get('arch')}), images from {args.images}, "
          f"batch {args.batch_size}, best of {args.repeat}; each method in its own process, the loop untuned")
    results = {name: in_child(method, Path(path), args) for name, (method, path) in methods.items()}
    base, torch_labels = results["per-image loop (seeds)"], results["imgcls torch"]["labels"]
    print(f"\n{'method':28} {'seconds':>8} {'images/s':>9} {'speed-up':>9} {'same top-1':>11} {'as torch':>9}")
    for name, result in results.items():
        same = sum(a == b for a, b in zip(result["labels"], base["labels"])) / result["images"]
        as_torch = sum(a == b for a, b in zip(result["labels"], torch_labels)) / result["images"]
        print(f"{name:28} {result['seconds']:8.2f} {result['images'] / result['seconds']:9.1f} "
              f"{base['seconds'] / result['seconds']:8.1f}x {same:10.1%} {as_torch:8.1%}")


if __name__ == "__main__":
    main()
