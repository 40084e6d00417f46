"""Training wall time: the seeds' plain transfer-learning loop vs `imgcls train`, whole processes side by side.

    python benchmarks/train_speed.py [DATA] [--mode fe|finetune|staged|all] [--epochs N] [--img-size 224]
                                     [--skip-plain] [--timm] [--repeat N]

The plain recipe is what the seeds (004, and the PyTorch transfer-learning tutorial it follows) write:
torchvision ImageFolder + PIL transforms (RandomResizedCrop + flip / Resize + CenterCrop) + DataLoader
(batch 32, 4 workers), SGD lr 0.001 momentum 0.9, StepLR(7, 0.1), the backbone run on every batch of
every epoch -- frozen for feature extraction (only the head in the optimizer). imgcls runs as
`python -m imgcls train DATA --strategy ...` with its defaults and a cold feature cache. Both use
timm's tf_efficientnet_lite0 with the same offline ImageNet weights, the same epochs and image size,
and each is timed as a whole process, start-up included. Accuracy is the best val accuracy of each.

With --timm, fine-tuning is also timed with timm's own train.py (../shared/peers/timm_train.py, unchanged)
with the flags of ../shared/peers/README.md: the same model, offline ImageNet weights (saved from imgcls's
loader in timm's key layout), image size, batch size 32 and epochs; its best val top-1 from summary.csv.

Default DATA: ../shared/datasets/hymenoptera_data (ants/bees, 244 train / 153 val photos).
Figures on a shared machine are noisy: compare the columns of one run, not runs with each other.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = str(REPO.parent / "shared" / "datasets" / "hymenoptera_data")  # ../shared beside the repo
STRATEGY = {"fe": "feature-extraction", "finetune": "finetune", "staged": "staged"}
DEFAULT_EPOCHS = {"fe": 10, "finetune": 2, "staged": 10}
TIMM_TRAIN = REPO.parent / "shared" / "peers" / "timm_train.py"


def timm_peer(data: str, epochs: int, tmp: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, best val accuracy) of timm's train.py fine-tuning tf_efficientnet_lite0 as the peers'
    README runs it."""
    import csv

    import timm
    import torch

    from imgcls.models.weights import load_offline_package

    weights = tmp / "tf_efficientnet_lite0_imagenet.pth"
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_offline_package(model, "tf_efficientnet_lite0")
    torch.save(model.state_dict(), weights)
    out = tmp / "timm"
    command = [sys.executable, str(TIMM_TRAIN), "--data-dir", data, "--train-split", "train", "--val-split", "val",
               "--model", "tf_efficientnet_lite0", "--pretrained", "--pretrained-path", str(weights),
               "--num-classes", "2", "--epochs", str(epochs), "--batch-size", "32", "--lr", "0.01", "--opt", "sgd",
               "--sched", "cosine", "--warmup-epochs", "0", "--channels-last", "--workers", "1", "--device", "cpu",
               "--output", str(out)]
    start = time.perf_counter()
    subprocess.run(command, env={**env, "IMGCLS_NO_TUNING": "1"}, stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - start
    with next(out.glob("*/summary.csv")).open() as handle:
        return seconds, max(float(row["eval_top1"]) for row in csv.DictReader(handle)) / 100


def plain_recipe(data: str, mode: str, epochs: int, img_size: int, workers: int) -> float:
    """The seeds' loop; returns the best val accuracy. Runs in its own process (see main)."""
    import timm
    import torch
    from torch import nn, optim
    from torchvision import datasets, transforms

    from imgcls.models.weights import load_offline_package

    torch.manual_seed(0)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    tfs = {"train": transforms.Compose([transforms.RandomResizedCrop(img_size), transforms.RandomHorizontalFlip(),
                                        transforms.ToTensor(), normalize]),
           "val": transforms.Compose([transforms.Resize(int(img_size / 0.875)), transforms.CenterCrop(img_size),
                                      transforms.ToTensor(), normalize])}
    sets = {split: datasets.ImageFolder(os.path.join(data, split), tfs[split]) for split in ("train", "val")}
    loaders = {split: torch.utils.data.DataLoader(sets[split], batch_size=32, shuffle=split == "train",
                                                  num_workers=workers) for split in sets}
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_offline_package(model, "tf_efficientnet_lite0")
    model.reset_classifier(len(sets["train"].classes))
    if mode == "fe":
        for parameter in model.parameters():
            parameter.requires_grad = False
        for parameter in model.get_classifier().parameters():
            parameter.requires_grad = True
    params = model.get_classifier().parameters() if mode == "fe" else model.parameters()
    optimizer = optim.SGD(params, lr=0.001, momentum=0.9)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    criterion = nn.CrossEntropyLoss()
    best_acc, best_weights = 0.0, copy.deepcopy(model.state_dict())
    for epoch in range(epochs):
        for phase in ("train", "val"):
            model.train(phase == "train")
            correct = 0
            for inputs, labels in loaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                correct += int((outputs.argmax(1) == labels).sum())
            if phase == "train":
                scheduler.step()
            accuracy = correct / len(sets[phase])
            print(f"plain epoch {epoch + 1}/{epochs} {phase} acc {accuracy:.4f}", file=sys.stderr, flush=True)
            if phase == "val" and accuracy > best_acc:
                best_acc, best_weights = accuracy, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_weights)
    return best_acc


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return time.perf_counter() - start, result.stdout


def compare(data: str, mode: str, epochs: int, img_size: int, workers: int, skip_plain: bool,
            peer: bool = False, repeat: int = 1) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    row: dict = {"mode": mode, "epochs": epochs, "img_size": img_size, "imgcls_runs": []}
    for attempt in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            env["IMGCLS_CACHE"] = str(Path(tmp) / "cache")  # cold: feature extraction is part of the time
            command = [sys.executable, "-m", "imgcls", "train", data, "--model", "efficientnet_lite0",
                       "--strategy", STRATEGY[mode], "--epochs", str(epochs), "--img-size", str(img_size),
                       "--out", tmp, "--name", mode]
            seconds, stdout = timed(command, env)
            metrics = json.loads((Path(stdout.strip().splitlines()[-1]) / "metrics.json").read_text())
            row["imgcls_runs"].append(seconds)
            row["imgcls_acc"] = metrics["best_val_acc"]
            print(f"imgcls {mode} run {attempt + 1}/{repeat}: {seconds:.1f} s, best_val_acc {row['imgcls_acc']:.4f}",
                  file=sys.stderr, flush=True)
    row["imgcls_s"] = statistics.median(row["imgcls_runs"])
    if peer and mode == "finetune":
        with tempfile.TemporaryDirectory() as tmp:
            row["timm_s"], row["timm_acc"] = timm_peer(data, epochs, Path(tmp), env)
            print(f"timm train.py: {row['timm_s']:.1f} s ({row['timm_s'] / row['imgcls_s']:.2f}x imgcls's time), "
                  f"best val top-1 {row['timm_acc']:.4f}", flush=True)
    if not skip_plain and mode != "staged":
        command = [sys.executable, __file__, data, "--plain", mode, "--epochs", str(epochs),
                   "--img-size", str(img_size), "--plain-workers", str(workers)]
        # untuned, as a tutorial script runs (IMGCLS_NO_TUNING: nothing it imports from imgcls may tune it)
        row["plain_s"], stdout = timed(command, {**env, "IMGCLS_NO_TUNING": "1"})
        row["plain_acc"] = json.loads(stdout.strip().splitlines()[-1])["best_val_acc"]
        row["speedup"] = row["plain_s"] / row["imgcls_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--mode", choices=["fe", "finetune", "staged", "all"], default="fe")
    parser.add_argument("--epochs", type=int, help="default: 10 (fe, staged), 2 (finetune)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--plain-workers", type=int, default=4, help="the tutorial's num_workers (4)")
    parser.add_argument("--skip-plain", action="store_true", help="skip the seeds' loop")
    parser.add_argument("--timm", action="store_true", help="fine-tuning: timm's train.py too (see above)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="imgcls runs per mode, each with cold caches: the median is compared, the range shown "
                             "(whole-process times move by seconds from run to run on a shared machine)")
    parser.add_argument("--plain", choices=["fe", "finetune"], help=argparse.SUPPRESS)  # the plain child process
    args = parser.parse_args()
    if args.plain:
        accuracy = plain_recipe(args.data, args.plain, args.epochs, args.img_size, args.plain_workers)
        print(json.dumps({"best_val_acc": accuracy}))
        return
    modes = ["fe", "finetune", "staged"] if args.mode == "all" else [args.mode]
    print(f"data {args.data}, tf_efficientnet_lite0, {os.cpu_count()} CPUs; whole processes, cold feature cache")
    print(f"{'mode':9} {'epochs':>6} {'plain s':>9} {'imgcls s':>9} {'speedup':>8} {'plain acc':>10} {'imgcls acc':>10}")
    for mode in modes:
        row = compare(args.data, mode, args.epochs or DEFAULT_EPOCHS[mode], args.img_size, args.plain_workers,
                      args.skip_plain, args.timm, max(1, args.repeat))
        plain_s = f"{row['plain_s']:9.1f}" if "plain_s" in row else f"{'-':>9}"
        speedup = f"{row['speedup']:7.1f}x" if "speedup" in row else f"{'-':>8}"
        plain_acc = f"{row['plain_acc']:10.4f}" if "plain_acc" in row else f"{'-':>10}"
        runs = row["imgcls_runs"]
        spread = f"  (imgcls median of {len(runs)}: {min(runs):.1f}-{max(runs):.1f} s)" if len(runs) > 1 else ""
        print(f"{mode:9} {row['epochs']:6d} {plain_s} {row['imgcls_s']:9.1f} {speedup} {plain_acc} "
              f"{row['imgcls_acc']:10.4f}{spread}", flush=True)


if __name__ == "__main__":
    main()
