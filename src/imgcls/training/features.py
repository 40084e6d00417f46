"""Feature extraction that runs the frozen backbone once.

A frozen backbone maps each image to the same embedding every epoch, so the pooled pre-logit
features of train and val are computed once (evaluation transform, inference mode, channels_last,
batched) and cached under ``$IMGCLS_CACHE/features``. The head then trains on the cache through
the same Lightning Trainer and ClassifierModule, so checkpoints hold the full model as always.

Cache entries are keyed by everything that decides their content: the split's files (path, size,
mtime) or array bytes, the architecture and a hash of the backbone's weights, the preprocessing and
the view (plain or mirrored). Any change makes a new entry; nothing stale is ever reused.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from imgcls.cache import cache_dir, content_key
from imgcls.data.presets import EvalPreset, Preprocess
from imgcls.data.source import DataSource
from imgcls.models.chunked import forward_in_slices
from imgcls.progress import Progress
from imgcls.rundir import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: eval pictures resized as uint8 tensors by torchvision (1: by Pillow)
VIEWS = ("plain", "hflip")


@dataclass
class FeatureSet:
    """Embeddings (N, D) and labels (N,) of one split."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def supports_cached_features(model: nn.Module) -> bool:
    """timm's interface: forward_features -> forward_head(pre_logits=True) -> get_classifier()."""
    return all(callable(getattr(model, name, None)) for name in ("forward_features", "forward_head",
                                                                  "get_classifier"))


def embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logit features: what the classifier head sees."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


class MirroredEval:
    """The evaluation transform, then a horizontal flip (a second, mirrored view of each image)."""

    def __init__(self, preprocess: Preprocess):
        self.eval = EvalPreset(preprocess)

    def __call__(self, image):  # noqa: ANN001, ANN204 - PIL image in, tensor out
        return TF.horizontal_flip(self.eval(image))


# keys ------------------------------------------------------------------------------------------
def split_fingerprint(source: DataSource, split: str) -> Any:
    """What identifies a split's content: files with size and mtime, or a hash of array data."""
    if split in source.arrays:
        images, labels = source.arrays[split]
        digest = hashlib.blake2b(images.tobytes(), digest_size=16)
        digest.update(labels.tobytes())
        return {"array": digest.hexdigest(), "shape": list(images.shape)}
    rows = []
    for path, label in source.files[split]:
        try:
            stat = os.stat(path)
            rows.append((path, label, stat.st_size, stat.st_mtime_ns))
        except OSError:
            rows.append((path, label, None, None))
    return {"files": rows, "classes": source.classes}


def backbone_hash(model: nn.Module) -> str:
    """Hash of every tensor but the classifier's: the head does not change the features."""
    head = {t.data_ptr() for t in model.get_classifier().state_dict().values()}
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in head:
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def feature_key(fingerprint: Any, arch: dict[str, Any], weights: str, preprocess: Preprocess, view: str) -> str:
    return content_key(CACHE_VERSION, fingerprint, arch, weights, preprocess.to_dict(), view, timm.__version__)


# extraction ------------------------------------------------------------------------------------
def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def extract(model: nn.Module, dataset: Any, batch_size: int, workers: int, desc: str) -> FeatureSet:
    """Embeddings of every item of ``dataset`` (eval mode, channels_last, batched), with progress."""
    device = _device()
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda")
    features, labels = [], []
    with Progress(desc, len(dataset)) as bar:
        for images, targets in loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            features.append(forward_in_slices(partial(embed, model), images, device.type == "cpu").float().cpu())
            labels.append(torch.as_tensor(targets))
            bar.update(len(targets))
    return FeatureSet(torch.cat(features), torch.cat(labels).long())


def _load(path: os.PathLike) -> FeatureSet | None:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return FeatureSet(data["features"], data["labels"])
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged entry is simply extracted again
        log.warning("feature cache entry %s is unreadable (%s); extracting again", path, type(exc).__name__)
        return None


def _save(path: os.PathLike, features: FeatureSet) -> None:
    buffer = io.BytesIO()
    torch.save({"features": features.features, "labels": features.labels}, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:  # a full or read-only cache must not end the run: the features are in memory
        log.warning("could not write the feature cache %s (%s); features will be extracted again next time",
                    path, exc.strerror)


def cached_features(model: nn.Module, source: DataSource, split: str, preprocess: Preprocess,
                    arch: dict[str, Any], *, view: str = "plain", batch_size: int = 64,
                    workers: int = 0) -> FeatureSet:
    """The embeddings of ``split`` seen through ``view``: from the cache, or extracted and cached."""
    fingerprint = split_fingerprint(source, split)
    key = feature_key(fingerprint, arch, backbone_hash(model), preprocess, view)
    path = cache_dir("features", f"{key}.pt")
    found = _load(path)
    if found is not None and len(found) == len(source.labels(split)):
        log.info("features: %s (%s) from the cache, %d images", split, view, len(found))
        return found
    transform = MirroredEval(preprocess) if view == "hflip" else EvalPreset(preprocess)
    # Same decoding as evaluation (draft size included), so cached val features score as evaluate does.
    dataset = source.dataset(split, transform, draft_size=preprocess.resize_size)
    start = time.perf_counter()
    features = extract(model, dataset, batch_size, workers, desc=f"features {split}" + (f" ({view})" if
                                                                                           view != "plain" else ""))
    log.info("features: %s (%s) extracted in %.1f s, %d images of %d dims; cached in %s", split, view,
             time.perf_counter() - start, len(features), features.features.shape[1], path.parent)
    _save(path, features)
    return features


def head_matches_model(model: nn.Module, dataset: Any) -> bool:
    """Whether classifier(embedding) reproduces model(image) on two images: the contract caching relies on."""
    images = torch.stack([dataset[i][0] for i in range(min(2, len(dataset)))]).to(_device())
    model.eval().to(images.device)
    with torch.inference_mode():
        direct = model(images)
        via_head = model.get_classifier()(embed(model, images))
    return direct.shape == via_head.shape and torch.allclose(direct, via_head, atol=1e-4, rtol=1e-3)


def train_val_features(model: nn.Module, source: DataSource, preprocess: Preprocess, arch: dict[str, Any], *,
                       mirror: bool, batch_size: int, workers: int) -> tuple[FeatureSet, FeatureSet]:
    """Train embeddings (plus a mirrored copy when ``mirror``) and val embeddings."""
    settings = {"batch_size": batch_size, "workers": workers}
    train = cached_features(model, source, "train", preprocess, arch, **settings)
    if mirror:
        flipped = cached_features(model, source, "train", preprocess, arch, view="hflip", **settings)
        train = FeatureSet(torch.cat([train.features, flipped.features]), torch.cat([train.labels, flipped.labels]))
    val = cached_features(model, source, "val", preprocess, arch, **settings)
    return train, val
