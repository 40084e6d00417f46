"""``imgcls bench``: is training bound by the input pipeline or by the model?

Two numbers, measured as ``imgcls train`` with the same settings would run:

- data: images/s that the training loader delivers (decode + augment + normalise, with the same
  workers, batch size and decoded-image cache);
- model: images/s of full training steps (forward, loss, backward, optimizer step) on ready tensors of
  the same batch size and input size, with the same precision (and channels_last, as in training).

The slower one bounds training; the answer says what to change. A few batches of each keep it quick.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from imgcls.config import TrainConfig, load_train_config
from imgcls.runtime import usable_cpus
from imgcls.training.setup import make_datamodule, prepare
from imgcls.training.strategies import apply_stage, plan_stages

log = logging.getLogger(__name__)


def measure_data(config: TrainConfig, source: Any, created: Any, batches: int) -> dict[str, Any]:
    module, _ = make_datamodule(config, source, created, on_features=False)  # the training loader, on images
    start = time.perf_counter()
    module.prepare_data()  # builds the cache when it is on and missing: a one-off cost, reported apart
    module.setup("fit")
    build_seconds = time.perf_counter() - start
    loader = module.train_dataloader()
    batches = max(1, min(batches, len(loader) - 1))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def ready(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:  # as the Trainer does: move, then finish
        images, labels = batch
        return module.on_after_batch_transfer((images.to(device, non_blocking=True), labels.to(device)), 0)

    iterator = iter(loader)
    ready(next(iterator))  # the first batch also starts the workers
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            images, labels = ready(next(iterator))
        except StopIteration:
            break
        count += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_second": round(count / seconds, 1), "images": count, "batch_size": config.batch_size,
            "workers": config.workers, "cache": module.decoded_cache, "setup_seconds": round(build_seconds, 2),
            "img_size": created.preprocess.img_size, "train_images": len(source.labels("train"))}


def _autocast(precision: str, device: torch.device) -> Any:
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def measure_model(config: TrainConfig, created: Any, steps: int, num_classes: int) -> dict[str, Any]:
    """Training steps on random tensors: what the model could take if data were free."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = created.model.to(device)
    first = plan_stages(config.strategy, max(config.epochs, 2), config.lr or 1e-3, 1.0, 0,
                        trainable_blocks=config.blocks_to_train)[0]
    frozen = apply_stage(model, first)["frozen"]
    model.train()
    if frozen:  # as in training: a frozen backbone stays in eval mode
        model.eval()
        model.get_classifier().train()
    channels_last = True  # as training does (models/module.py), on CPU and GPU alike
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    size, batch = created.preprocess.img_size, config.batch_size
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    optimizer = create_optimizer_v2(model, opt=config.optimizer, lr=config.lr or 1e-3,
                                    weight_decay=config.weight_decay)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(config.precision, device):
            loss = F.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"name": config.model, "images_per_second": round(steps * batch / seconds, 1), "steps": steps,
            "batch_size": batch, "img_size": size, "device": str(device), "precision": config.precision,
            "channels_last": channels_last, "strategy": config.strategy}


def advice(config: TrainConfig, data: dict[str, Any], model: dict[str, Any], image_files: bool) -> list[str]:
    """What to change, the most effective first."""
    tips = []
    if data["images_per_second"] < model["images_per_second"]:
        if image_files and not data["cache"]:
            tips.append("--cache on: decode each image once instead of every epoch")
        if config.workers < usable_cpus():
            tips.append(f"--workers {min(usable_cpus(), max(2, 2 * config.workers))}: more loader processes "
                        f"({usable_cpus()} CPU cores here)")
        if data["img_size"] > 224:
            tips.append("a smaller --img-size: fewer pixels to crop and resize per image")
        if not tips:
            tips.append("the loader uses every core already: a machine with more CPU cores, or a smaller --img-size")
    else:
        if model["device"] == "cpu":
            tips.append("a GPU: the model step runs on the CPU here")
        elif config.precision == "32":
            tips.append("--precision bf16-mixed (or 16-mixed on GPUs without bf16)")
        if config.strategy in ("finetune", "scratch"):
            tips.append("--strategy feature-extraction trains only the head (much cheaper steps)")
        tips.append("a smaller --img-size or --model")
    return tips


def bench(data: str, *, batches: int = 4, steps: int = 2, config_file: Any = None, **options: Any) -> dict[str, Any]:
    """``{"data", "model", "bound", "advice"}`` for training on ``data`` with ``options`` (train settings)."""
    config, source, created = prepare(load_train_config(config_file, data=str(data), **options),
                                      verb="bench")
    log.info("bench: %s on %s, batch %d, %d loader workers, precision %s", config.model, source.spec,
             config.batch_size, config.workers, config.precision)
    data_figures = measure_data(config, source, created, batches)
    model_figures = measure_model(config, created, steps, len(source.classes))
    bound = "data" if data_figures["images_per_second"] < model_figures["images_per_second"] else "model"
    return {"data": data_figures, "model": model_figures, "bound": bound,
            "ratio": round(data_figures["images_per_second"] / model_figures["images_per_second"], 2),
            "advice": advice(config, data_figures, model_figures, source.paths("train") is not None)}


def describe(result: dict[str, Any]) -> str:
    """The bench result for people."""
    data, model = result["data"], result["model"]
    cache = "on" if data["cache"] else "off"
    lines = [
        f"data : {data['images_per_second']:8.1f} images/s  (decode + augment, {data['workers']} workers, "
        f"cache {cache}, batch {data['batch_size']}, {data['img_size']} px)",
        f"model: {model['images_per_second']:8.1f} images/s  ({model['name']} train step on {model['device']}, "
        f"precision {model['precision']}, {model['strategy']})",
    ]
    if result["bound"] == "data":
        waiting = 1 - result["ratio"]
        lines.append(f"bound: data -- the model would wait on the loader about {waiting:.0%} of the time")
    else:
        lines.append("bound: model -- the loader keeps up; speed comes from the model side")
    lines += [f"  try: {tip}" for tip in result["advice"]]
    return "\n".join(lines)
