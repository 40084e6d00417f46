"""The Lightning DataModule: owns datasets, transforms, samplers and loaders (the model owns none)."""

from __future__ import annotations

from collections import Counter

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from imgcls.data.presets import EvalPreset, Preprocess, TrainPreset, normalize_batch
from imgcls.data.source import DataSource


def class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the samples (for --balance loss)."""
    counts = Counter(labels)
    weights = torch.tensor([len(labels) / (num_classes * counts[c]) if counts[c] else 0.0
                            for c in range(num_classes)])
    return weights


class ImageDataModule(pl.LightningDataModule):
    def __init__(self, source: DataSource, preprocess: Preprocess, *, batch_size: int = 32, workers: int = 0,
                 augment: str = "standard", hflip: bool = True, balance: str = "none", seed: int = 42,
                 decoded_cache: bool = False):
        super().__init__()
        self.source, self.preprocess = source, preprocess
        self.batch_size, self.workers = batch_size, workers
        self.augment, self.hflip, self.balance, self.seed = augment, hflip, balance, seed
        self.decoded_cache = decoded_cache  # read uint8 pixels from data/decoded_cache.py instead of files

    def prepare_data(self) -> None:
        if self.decoded_cache:  # one process per node decodes; DDP peers wait at Lightning's barrier
            from imgcls.data.decoded_cache import cached_datasets

            cached_datasets(self.source, self.preprocess, self.augment, self.hflip)

    def setup(self, stage: str | None = None) -> None:
        pre = self.preprocess
        if self.decoded_cache:
            from imgcls.data.decoded_cache import cached_datasets

            self.train_set, self.eval_sets = cached_datasets(self.source, pre, self.augment, self.hflip)
            return
        # JPEGs decode at a reduced scale while both sides stay >= 2x the crop (train) or the
        # resize size (eval): much faster on large photos, with no visible loss at the input size.
        self.train_set = self.source.dataset("train", TrainPreset(pre, self.augment, self.hflip),
                                             draft_size=2 * pre.img_size)
        self.eval_sets = {split: self.source.dataset(split, EvalPreset(pre), draft_size=pre.resize_size)
                          for split in ("val", "test") if split in self.source.splits}

    def _loader(self, dataset, **kwargs) -> DataLoader:  # noqa: ANN001
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.workers,
                          persistent_workers=self.workers > 0, pin_memory=torch.cuda.is_available(), **kwargs)

    def train_dataloader(self) -> DataLoader:
        labels = self.source.labels("train")
        # A last batch of one sample breaks BatchNorm in training mode; drop just that case.
        drop_last = len(labels) % self.batch_size == 1
        generator = torch.Generator().manual_seed(self.seed)
        if self.balance == "sampler":
            weights = class_weights(labels, len(self.source.classes))[labels]
            sampler = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
            return self._loader(self.train_set, sampler=sampler, drop_last=drop_last)
        return self._loader(self.train_set, shuffle=True, generator=generator, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_sets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_sets["test"], shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):  # noqa: ANN001, ANN201
        images, labels = batch
        if images.dtype == torch.uint8:  # cached pixels: normalised here, on the GPU when there is one
            images = normalize_batch(images, self.preprocess)
        return images, labels
