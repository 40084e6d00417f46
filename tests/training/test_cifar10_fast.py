"""The cifar10-fast preset (configs/cifar10-fast.yaml): runs end to end on a tiny CIFAR-format fixture."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from imgcls.data.presets import Preprocess, train_steps
from imgcls.models.onecycle import one_cycle
from tests.helpers import REPO, write_cifar_batches

PRESET = REPO / "configs" / "cifar10-fast.yaml"


def test_preset_trains_on_cifar_batches(tmp_path: Path) -> None:
    from imgcls.config import load_train_config
    from imgcls.training.fit import train

    write_cifar_batches(tmp_path / "cifar-10-batches-py", per_batch=16)
    # The preset as written, but 3 epochs of 2 steps: CPU-sized.
    config = load_train_config(PRESET, data=f"cifar10:{tmp_path}", epochs=3, batch_size=16, workers=0,
                               out=str(tmp_path / "runs"))
    run = train(config)
    used = yaml.safe_load(run.file("config.yaml").read_text())
    assert (used["model"], used["scheduler"], used["augment"], used["label_smoothing"]) == \
        ("cifar_resnet9", "onecycle", "translate", 0.2)
    epochs = run.read_metrics()["epochs"]
    rates = [row["lr"] for row in epochs]  # the rate each epoch started with
    assert len(rates) == 3 and rates[0] < rates[1] and rates[2] < rates[1]  # one-cycle: up, then down
    assert run.file("best.pt").is_file()


def test_one_cycle_rises_then_falls_to_near_zero() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.4)
    scheduler = one_cycle(optimizer, {"lr": 0.4, "epochs": 10, "warmup_epochs": 2}, total_steps=100)["lr_scheduler"]
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler["scheduler"].step()
    peak = rates.index(max(rates))
    assert scheduler["interval"] == "step" and 15 <= peak <= 25 and abs(max(rates) - 0.4) < 1e-6
    assert rates[0] < 0.02 and rates[-1] < 0.01


def test_translate_shifts_the_whole_picture_by_at_most_4_pixels() -> None:
    torch.manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    image = torch.stack([rows, cols, torch.zeros_like(rows)]).to(torch.uint8)  # each pixel knows where it was
    transform = torch.nn.Sequential(*train_steps(Preprocess(32, crop_pct=1.0), "translate", hflip=False))
    shifts = set()
    for _ in range(30):
        out = transform(image)
        assert out.shape == (3, 32, 32)
        shifts.add((int(out[0, 16, 16]) - 16, int(out[1, 16, 16]) - 16))
    assert len(shifts) > 5 and all(abs(dy) <= 4 and abs(dx) <= 4 for dy, dx in shifts)
