"""Decode + augment throughput of the training input pipeline: plain PIL loader vs imgcls, with and without
the decoded-image cache.

    python benchmarks/pipeline_throughput.py [--data DIR] [--workers 2] [--batch-size 32] [--epochs 2]

Three loaders over the same training images, with the same workers and batch size, each yielding
normalised float batches of 224 px ready for a model:

- ``PIL ImageFolder``: the seeds' loader -- torchvision ImageFolder, RandomResizedCrop(224),
  RandomHorizontalFlip, ToTensor, Normalize; every epoch decodes every full-size JPEG;
- ``imgcls files``: imgcls's loader without the cache (JPEG draft decoding at 2x the crop size);
- ``imgcls cache``: imgcls's loader with ``--cache on``: uint8 crops from the memory-mapped cache,
  normalised per batch. The one-off build time is printed apart.

Default data: the full-size ants/bees photos (../shared/datasets/hymenoptera_data, up to 2592x1944).
The cache is built in a temporary IMGCLS_CACHE, so runs never reuse an entry from elsewhere.
Figures on a shared machine are noisy: compare the columns of one run, not runs with each other.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

FULL_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera_data"
REPO = Path(__file__).resolve().parents[1]


def pil_imagefolder(train: Path, workers: int, batch_size: int) -> DataLoader:
    transform = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406],
                                                                                [0.229, 0.224, 0.225])])
    return DataLoader(datasets.ImageFolder(str(train), transform), batch_size=batch_size, shuffle=True,
                      num_workers=workers, persistent_workers=workers > 0)


def imgcls_loader(data: Path, workers: int, batch_size: int, cache: bool):  # noqa: ANN201
    from imgcls.data.datamodule import ImageDataModule
    from imgcls.data.presets import Preprocess
    from imgcls.data.source import resolve_data

    module = ImageDataModule(resolve_data(str(data)), Preprocess(224), batch_size=batch_size, workers=workers,
                             augment="standard", decoded_cache=cache)
    start = time.perf_counter()
    module.prepare_data()
    module.setup("fit")
    build = time.perf_counter() - start
    return module.train_dataloader(), module, build


def images_per_second(loader: DataLoader, epochs: int, finish=None) -> float:  # noqa: ANN001
    """Images/s over epochs 2..N, as training sees them (the first epoch also starts the workers)."""
    count, seconds = 0, 0.0
    for epoch in range(epochs):
        start, seen = time.perf_counter(), 0
        for images, labels in loader:
            if finish is not None:
                images, labels = finish((images, labels), 0)
            assert images.dtype == torch.float32 and images.shape[-1] == 224
            seen += len(labels)
        if epoch > 0 or epochs == 1:
            count, seconds = count + seen, seconds + time.perf_counter() - start
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FULL_PHOTOS if FULL_PHOTOS.is_dir() else REPO / "examples/ants_bees")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per loader; all but the first count")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loader's work runs in its worker processes, as in training
    os.environ["IMGCLS_CACHE"] = tempfile.mkdtemp(prefix="imgcls-bench-cache-")

    rows = []
    baseline = images_per_second(pil_imagefolder(args.data / "train", args.workers, args.batch_size), args.epochs)
    rows.append(("PIL ImageFolder (seeds)", baseline, ""))
    files, _, _ = imgcls_loader(args.data, args.workers, args.batch_size, cache=False)
    rows.append(("imgcls files (draft decode)", images_per_second(files, args.epochs), ""))
    cached, module, build = imgcls_loader(args.data, args.workers, args.batch_size, cache=True)
    rows.append(("imgcls cache", images_per_second(cached, args.epochs, module.on_after_batch_transfer),
                 f"one-off build {build:.1f} s"))

    print(f"data: {args.data} ({len(cached.dataset)} train images), workers {args.workers}, "
          f"batch {args.batch_size}, epochs 2-{args.epochs}; measured while shared")
    print(f"{'loader':30} {'images/s':>9} {'vs PIL':>7}")
    for name, speed, note in rows:
        print(f"{name:30} {speed:9.1f} {speed / baseline:6.2f}x  {note}")


if __name__ == "__main__":
    main()
