"""Lightning DataModules: they own datasets, transforms, samplers and loaders (the model owns none).

:class:`ImageDataModule` decodes and augments pictures; :class:`FeatureDataModule` serves cached
embeddings (feature extraction trains its head on those, see ``training/features.py``).
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.seed import pl_worker_init_function
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from imgcls.data.presets import EvalPreset, Preprocess, TrainPreset, normalize_batch
from imgcls.data.sampling import EpochSampler
from imgcls.data.source import DataSource


def class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the samples (for --balance loss)."""
    counts = Counter(labels)
    weights = torch.tensor([len(labels) / (num_classes * counts[c]) if counts[c] else 0.0
                            for c in range(num_classes)])
    return weights


def train_order(labels: list[int], num_classes: int, batch_size: int, balance: str, seed: int,
                resume_at: tuple[int, int] | None = None) -> dict[str, Any]:
    """DataLoader arguments for training: seeded shuffling, or class-balanced sampling (--balance sampler);
    ``resume_at=(epoch, samples)`` continues an epoch after the samples an earlier session trained on."""
    # A last batch of one sample breaks BatchNorm in training mode; drop just that case.
    drop_last = len(labels) % batch_size == 1
    weights = class_weights(labels, num_classes)[labels] if balance == "sampler" else None
    return {"sampler": EpochSampler(len(labels), seed, weights, resume_at), "drop_last": drop_last}


def _training_worker_init(worker_id: int) -> None:
    """Lightning's per-worker seeding, and SIGTERM left to the main process: a scheduler signals every
    process of the job, and the main one stops after the batch in flight, which needs its workers."""
    pl_worker_init_function(worker_id)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ImageDataModule(pl.LightningDataModule):
    def __init__(self, source: DataSource, preprocess: Preprocess, *, batch_size: int = 32, workers: int = 0,
                 augment: str = "standard", hflip: bool = True, balance: str = "none", seed: int = 42,
                 decoded_cache: bool = False):
        super().__init__()
        self.source, self.preprocess = source, preprocess
        self.batch_size, self.workers = batch_size, workers
        self.augment, self.hflip, self.balance, self.seed = augment, hflip, balance, seed
        self.decoded_cache = decoded_cache  # read uint8 pixels from data/decoded_cache.py instead of files
        self.resume_at: tuple[int, int] | None = None  # (epoch, samples done) of a run resumed mid-epoch

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

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        workers = self.workers
        # Worker processes outlive epochs (no re-fork per epoch); with CUDA, batches go to pinned memory.
        extra = ({"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _training_worker_init}
                 if workers > 0 else {})
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=workers,
                          pin_memory=torch.cuda.is_available(), **extra, **kwargs)

    def train_dataloader(self) -> DataLoader:
        labels = self.source.labels("train")
        order = train_order(labels, len(self.source.classes), self.batch_size, self.balance, self.seed,
                            self.resume_at)
        return self._loader(self.train_set, **order)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_sets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_sets["test"], shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):  # noqa: ANN001, ANN201
        images, labels = batch
        if images.dtype == torch.uint8:  # cached pixels: normalised here, on the GPU when there is one
            images = normalize_batch(images, self.preprocess)
        return images, labels


class FeatureDataModule(pl.LightningDataModule):
    """(embedding, label) batches from in-memory tensors: no decoding, no workers."""

    def __init__(self, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], *,
                 num_classes: int, batch_size: int = 32, balance: str = "none", seed: int = 42):
        super().__init__()
        self.train_set, self.val_set = TensorDataset(*train), TensorDataset(*val)
        self.num_classes, self.batch_size, self.balance, self.seed = num_classes, batch_size, balance, seed
        self.resume_at: tuple[int, int] | None = None  # (epoch, samples done) of a run resumed mid-epoch

    def train_dataloader(self) -> DataLoader:
        labels = self.train_set.tensors[1].tolist()
        order = train_order(labels, self.num_classes, self.batch_size, self.balance, self.seed, self.resume_at)
        return DataLoader(self.train_set, batch_size=self.batch_size, **order)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1024, shuffle=False)
