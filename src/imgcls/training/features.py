"""Feature extraction that runs the frozen backbone once.

A frozen backbone maps each image to the same embedding every epoch, so the pooled pre-logit
features of train and val are computed once (evaluation transform, inference mode, channels_last,
batched) and cached under ``$IMGCLS_CACHE/features``. The head then trains on the cache through
the same Lightning Trainer and ClassifierModule, so checkpoints hold the full model as always.

Cache entries are keyed by everything that decides their content: each file's bytes (see
:mod:`imgcls.training.feature_store`; array data such as CIFAR by a hash of the whole split), the
architecture and a hash of the backbone's weights, the preprocessing and the view (plain or
mirrored). Any change makes a new entry; nothing stale is ever reused, and only files never seen are
extracted.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms.v2 import functional as TF

from imgcls.cache import cache_dir, content_key
from imgcls.data.filecheck import file_digests
from imgcls.data.images import ImageLoadError, load_image
from imgcls.data.presets import EvalPreset, Preprocess, normalize_batch
from imgcls.data.source import DataSource, MultiHot
from imgcls.errors import DataError
from imgcls.models.chunked import forward_in_slices
from imgcls.models.factory import embed
from imgcls.progress import Progress
from imgcls.runtime import usable_cpus
from imgcls.rundir import atomic_write_bytes
from imgcls.training.feature_store import FeatureStore
from imgcls.training.onnx_embed import MIN_IMAGES as ONNX_MIN_IMAGES, OnnxEmbedder, embedder_for

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 3: one entry per file content (2: per split, eval resize by torchvision; 1: by Pillow)
EXTRACT_CHUNK = 4096  # images per cache shard: an interrupted extraction keeps the chunks it finished
VIEWS = ("plain", "hflip")


@dataclass
class FeatureSet:
    """Embeddings (N, D) and labels (N,) of one split; ``mirrored``: the embeddings (N, D) of the same images
    flipped left to right, where they were extracted together."""

    features: torch.Tensor
    labels: torch.Tensor
    mirrored: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


def supports_cached_features(model: nn.Module) -> bool:
    """timm's interface: forward_features -> forward_head(pre_logits=True) -> get_classifier()."""
    return all(callable(getattr(model, name, None)) for name in ("forward_features", "forward_head",
                                                                  "get_classifier"))


class MirroredEval:
    """The evaluation transform, then a horizontal flip (a second, mirrored view of each image)."""

    def __init__(self, preprocess: Preprocess):
        self.eval = EvalPreset(preprocess)

    def __call__(self, image):  # noqa: ANN001, ANN204 - PIL image in, tensor out
        return TF.horizontal_flip(self.eval(image))


# keys ------------------------------------------------------------------------------------------
def array_fingerprint(source: DataSource, split: str) -> dict[str, Any]:
    """What identifies an array split's content (CIFAR): a hash of its pixels and labels."""
    images, labels = source.arrays[split]
    digest = hashlib.blake2b(images.tobytes(), digest_size=16)
    digest.update(labels.tobytes())
    return {"array": digest.hexdigest(), "shape": list(images.shape)}


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


def space_key(arch: dict[str, Any], weights: str, preprocess: Preprocess, view: str) -> str:
    """The feature space: what maps a picture to its embedding. The number of classes and the name the
    user gave are left out: the same backbone with another head gives the same features."""
    backbone = {k: v for k, v in arch.items() if k not in ("num_classes", "name")}
    return content_key(CACHE_VERSION, backbone, weights, preprocess.to_dict(), view, timm.__version__)


def feature_key(fingerprint: Any, arch: dict[str, Any], weights: str, preprocess: Preprocess, view: str) -> str:
    return content_key(space_key(arch, weights, preprocess, view), fingerprint)


# extraction ------------------------------------------------------------------------------------
def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def extract(model: nn.Module, dataset: Any, batch_size: int, workers: int, desc: str,
            collate_fn: Callable | None = None, preprocess: Preprocess | None = None,
            mirrored: bool = False) -> FeatureSet:
    """Embeddings of every item of ``dataset`` (eval mode, channels_last, batched; on a CPU, from
    ``ONNX_MIN_IMAGES`` images on, by onnxruntime), with progress. ``preprocess`` normalises uint8 batches (the
    decoded-image cache's) on the device. ``mirrored``: each batch's horizontally flipped copy is embedded too
    (into ``FeatureSet.mirrored``), from the same decoded pixels."""
    device = _device()
    model.eval().to(device)
    if device.type == "cpu" and workers > 0:
        loader = _batches_in_threads(dataset, batch_size, collate_fn or default_collate)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                            collate_fn=collate_fn)
    features, labels = [], []
    fast: OnnxEmbedder | None = None  # onnxruntime on a CPU, for enough images (training/onnx_embed.py)
    try_fast = device.type == "cpu" and len(dataset) * (2 if mirrored else 1) >= ONNX_MIN_IMAGES
    with Progress(desc, len(dataset)) as bar:
        try:
            for images, targets in loader:
                if len(targets):
                    images = images.to(device, non_blocking=True)
                    if images.dtype == torch.uint8 and preprocess is not None:
                        images = normalize_batch(images, preprocess)
                    if mirrored:
                        images = torch.cat([images, TF.horizontal_flip(images)])
                    if try_fast:
                        fast, try_fast = embedder_for(model, images), False
                    if fast is not None:
                        embedded = fast(images)
                    else:
                        images = images.contiguous(memory_format=torch.channels_last)
                        embedded = forward_in_slices(partial(embed, model), images, device.type == "cpu").float().cpu()
                    # mirrored: (plain, mirrored) rows of this batch
                    features.append(embedded.view(2, len(targets), -1) if mirrored else embedded)
                    labels.append(torch.as_tensor(targets))
                bar.update(min(batch_size, len(dataset) - bar.done))
        finally:
            if fast is not None:
                fast.close()  # its threads: the session stays for the next split
    if not features:
        return FeatureSet(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
    if mirrored:
        return FeatureSet(torch.cat([f[0] for f in features]), torch.cat(labels).long(),
                          mirrored=torch.cat([f[1] for f in features]))
    return FeatureSet(torch.cat(features), torch.cat(labels).long())


def _batches_in_threads(dataset: Any, batch_size: int, collate_fn: Callable) -> Iterator[Any]:
    """``dataset``'s batches in order, decoded by a thread per core, the next batch while this one runs.

    On a CPU the network and the decoding share the same cores, and both release the GIL (Pillow's decoder,
    torchvision's kernels, onnxruntime): threads overlap them as well as worker processes do, without the
    processes' start and join (about a second each per split on 2 cores)."""
    starts = range(0, len(dataset), batch_size)
    with ThreadPoolExecutor(max_workers=usable_cpus(), thread_name_prefix="imgcls-decode") as pool:
        def submit(start: int) -> list:
            return [pool.submit(dataset.__getitem__, i) for i in range(start, min(start + batch_size, len(dataset)))]

        pending = submit(starts[0]) if starts else []
        for at in starts:
            items = [future.result() for future in pending]
            pending = submit(at + batch_size) if at + batch_size < len(dataset) else []
            yield collate_fn(items)


class _Files(Dataset):
    """(image, index) per path; a file that cannot be decoded yields None and is named in a warning."""

    def __init__(self, paths: list[str], transform: Any, draft_size: int):
        self.paths, self.transform, self.draft_size = paths, transform, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            return self.transform(load_image(self.paths[index], self.draft_size)), index
        except ImageLoadError as exc:
            log.warning("skipped %s: %s", exc.path, exc.detail)
            return None


def _collate_readable(items: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor | None, list[int]]:
    good = [item for item in items if item is not None]
    return (torch.stack([t for t, _ in good]) if good else None), [i for _, i in good]


def _transform(preprocess: Preprocess, view: str) -> Any:
    return MirroredEval(preprocess) if view == "hflip" else EvalPreset(preprocess)


def file_features(model: nn.Module, paths: list[str], preprocess: Preprocess, arch: dict[str, Any], *,
                  view: str = "plain", batch_size: int = 64, workers: int = 0, desc: str = "features",
                  weights: str | None = None) -> tuple[torch.Tensor, list[int]]:
    """Embeddings (rows in order) of the readable files of ``paths`` and their indices, from the per-file
    cache; files never seen in this feature space (by content) are extracted and cached, in chunks.
    ``weights``: :func:`backbone_hash` of ``model`` when the caller already knows it."""
    by_view, indices = views_of_files(model, paths, preprocess, arch, (view,), batch_size=batch_size,
                                      workers=workers, desc=desc, weights=weights)
    return by_view[view], indices


def views_of_files(model: nn.Module, paths: list[str], preprocess: Preprocess, arch: dict[str, Any],
                   views: tuple[str, ...], *, batch_size: int = 64, workers: int = 0, desc: str = "features",
                   weights: str | None = None) -> tuple[dict[str, torch.Tensor], list[int]]:
    """:func:`file_features` for several views of ``VIEWS`` at once: each file is decoded once for all of them
    (the mirrored view is the plain one's pixels flipped), so extracting both costs one decoding per file."""
    weights = weights or backbone_hash(model)
    stores = {v: FeatureStore(space_key(arch, weights, preprocess, v)) for v in views}
    digests = file_digests(paths)
    found = {v: store.get({d for d in digests if d}) for v, store in stores.items()}
    todo: dict[str, str] = {}  # digest -> one path with that content
    for path, digest in zip(paths, digests):
        if digest is None:
            log.warning("skipped %s: cannot be read", path)
        elif any(digest not in found[v] for v in views):
            todo.setdefault(digest, path)
    if todo:
        start = time.perf_counter()
        items = list(todo.items())
        together = set(views) == set(VIEWS)
        for at in range(0, len(items), EXTRACT_CHUNK):
            chunk = items[at:at + EXTRACT_CHUNK]
            transform = EvalPreset(preprocess) if together else _transform(preprocess, views[0])
            dataset = _Files([p for _, p in chunk], transform, preprocess.resize_size)
            got = extract(model, dataset, batch_size, workers, desc=desc, collate_fn=_collate_readable,
                          mirrored=together)
            keys = [chunk[i][0] for i in got.labels.tolist()]
            rows = {"plain": got.features, "hflip": got.mirrored} if together else {views[0]: got.features}
            for v, view_rows in rows.items():
                new = [(k, row) for k, row in zip(keys, view_rows.numpy()) if k not in found[v]]
                if new:
                    stores[v].add([k for k, _ in new], np.stack([row for _, row in new]))
                    found[v].update(new)
        log.info("%s: %d images from the cache, %d extracted in %.1f s (cache %s)", desc,
                 len(paths) - len(todo), len(todo), time.perf_counter() - start, stores[views[0]].folder.parent)
    else:
        log.info("%s: %d images from the cache", desc, len(paths))
    indices = [i for i, d in enumerate(digests) if all(d in found[v] for v in views)]
    if not indices:
        return {v: torch.zeros(0, 0) for v in views}, []
    return {v: torch.from_numpy(np.stack([found[v][digests[i]] for i in indices])) for v in views}, indices


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


def _array_features(model: nn.Module, source: DataSource, split: str, preprocess: Preprocess,
                    arch: dict[str, Any], view: str, batch_size: int, workers: int, desc: str) -> FeatureSet:
    """Array data (CIFAR) has no files: one entry for the whole split, keyed by a hash of its arrays."""
    key = feature_key(array_fingerprint(source, split), arch, backbone_hash(model), preprocess, view)
    path = cache_dir("features", f"{key}.pt")
    found = _load(path)
    if found is not None and len(found) == len(source.labels(split)):
        log.info("%s: from the cache, %d images", desc, len(found))
        return found
    start = time.perf_counter()
    features = extract(model, source.dataset(split, _transform(preprocess, view)), batch_size, workers, desc=desc)
    log.info("%s: extracted in %.1f s, %d images of %d dims; cached in %s", desc, time.perf_counter() - start,
             len(features), features.features.shape[1], path.parent)
    _save(path, features)
    return features


def cached_features(model: nn.Module, source: DataSource, split: str, preprocess: Preprocess,
                    arch: dict[str, Any], *, view: str = "plain", mirrored: bool = False, batch_size: int = 64,
                    workers: int = 0) -> FeatureSet:
    """The embeddings of ``split`` seen through ``view``: from the cache, or extracted and cached; with
    ``mirrored`` the plain view's and, in ``FeatureSet.mirrored``, the mirrored view's, from one decoding.

    A file that cannot be decoded takes the embedding and label of the next readable sample, as
    :class:`ImageFileDataset` does for images, so the set keeps one row per sample."""
    views = VIEWS if mirrored else (view,)
    desc = f"features {split}" + (f" ({' and '.join(views)})" if views != ("plain",) else "")
    if split in source.arrays:
        found = [_array_features(model, source, split, preprocess, arch, v, batch_size, workers, desc) for v in views]
        return FeatureSet(found[0].features, found[0].labels, mirrored=found[1].features if mirrored else None)
    if split not in source.splits:
        raise DataError(f"{source.spec} has no {split} split; it has {', '.join(source.splits)}")
    samples = source.files[split]
    # Same decoding as evaluation (draft size included), so cached val features score as evaluate does.
    by_view, readable = views_of_files(model, [p for p, _ in samples], preprocess, arch, views,
                                       batch_size=batch_size, workers=workers, desc=desc)
    if not readable:
        raise DataError("no image in this split can be decoded")
    row_of = {sample: row for row, sample in enumerate(readable)}
    count = len(samples)
    rows = [next(row_of[j % count] for j in range(i, i + count) if j % count in row_of) for i in range(count)]
    if source.task == "multilabel":  # each label a tuple of class indices: multi-hot rows, as the dataset gives
        multi_hot = MultiHot(len(source.classes))
        labels = torch.stack([multi_hot(samples[readable[r]][1]) for r in rows]).long()
    else:
        labels = torch.tensor([samples[readable[r]][1] for r in rows], dtype=torch.long)
    picked = {v: features[torch.tensor(rows)] if len(readable) < count else features
              for v, features in by_view.items()}
    return FeatureSet(picked[views[0]], labels, mirrored=picked["hflip"] if mirrored else None)


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
    train = cached_features(model, source, "train", preprocess, arch, mirrored=mirror, **settings)
    if train.mirrored is not None:
        train = FeatureSet(torch.cat([train.features, train.mirrored]), torch.cat([train.labels, train.labels]))
    val = cached_features(model, source, "val", preprocess, arch, **settings)
    return train, val
