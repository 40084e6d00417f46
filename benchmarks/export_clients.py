"""Do clients nobody here wrote read imgcls's exports? ``transformers.pipeline`` and ``timm.create_model
("local-dir:...")`` on an ``--format hf`` folder, OpenVINO's own runtime on an ``--format openvino`` file,
each against ``imgcls predict`` on every photo of a folder (offline: HF_HUB_OFFLINE=1).

    python benchmarks/export_clients.py RUN [--images DIR]   (default: the run's val split)

Prints, per client: photos, same top-1 as imgcls, largest probability difference.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from imgcls import Classifier  # noqa: E402
from imgcls.evaluation.evaluate import data_for  # noqa: E402
from imgcls.inference.predictor import expand_image_paths  # noqa: E402


def probabilities_by_label(results: list[dict], classes: list[str]) -> np.ndarray:
    return np.array([[next(t["score"] for t in r if t["label"] == c) for c in classes] for r in results])


def report(name: str, ours: np.ndarray, theirs: np.ndarray) -> None:
    same = float((ours.argmax(1) == theirs.argmax(1)).mean())
    print(f"{name:34} {len(ours):6d} {same:10.1%} {np.abs(ours - theirs).max():10.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=Path, help="folder of photos (default: the run's val split)")
    args = parser.parse_args()
    classifier = Classifier.load(args.run)
    classes = classifier.classes
    paths = expand_image_paths([args.images]) if args.images else data_for(args.run, None).paths("val")
    ours = np.array([[next(t["score"] for t in r["topk"] if t["label"] == c) for c in classes]
                     for r in classifier.predict(paths, topk=len(classes))])
    hf = Path(classifier.export("hf")["path"])
    xml = Path(classifier.export("openvino")["path"])
    print(f"{'client':34} {'photos':>6} {'same top-1':>10} {'max diff':>10}   (against imgcls predict)")

    from transformers import pipeline

    classify = pipeline("image-classification", model=str(hf))
    report("transformers.pipeline(DIR)", ours,
           probabilities_by_label(classify(paths, top_k=len(classes), batch_size=8), classes))

    import timm
    from PIL import Image

    model = timm.create_model(f"local-dir:{hf}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    labels = model.pretrained_cfg["label_names"]
    with torch.no_grad():
        probs = np.concatenate([model(torch.stack([transform(Image.open(p).convert("RGB"))
                                                    for p in paths[i:i + 8]])).softmax(-1).numpy()
                                for i in range(0, len(paths), 8)])
    report("timm.create_model(local-dir:DIR)", ours, probs[:, [labels.index(c) for c in classes]])

    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    pre = classifier.predictor.preprocess
    from imgcls.data.images import load_image
    from imgcls.data.presets import EvalPreset

    preset = EvalPreset(pre)
    logits = np.concatenate([compiled(torch.stack([preset(load_image(p, pre.resize_size))
                                                   for p in paths[i:i + 8]]).numpy())[0]
                             for i in range(0, len(paths), 8)])
    report("openvino.Core().compile_model(XML)", ours, torch.softmax(torch.from_numpy(logits), 1).numpy())


if __name__ == "__main__":
    main()
