"""The one Predictor: load -> preprocess -> forward -> labelled probabilities.

predict, evaluate, serve and export's parity check all go through it. It reads preprocessing from
the model file (checkpoint metadata), never from training flags. Backends run the network
(inference/backend.py: PyTorch checkpoints, exported ONNX and TorchScript files).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from imgcls.data.folders import report_ignored, walk_files
from imgcls.data.images import IMAGE_EXTENSIONS, ImageLoadError, load_image
from imgcls.data.presets import EvalPreset, UInt8EvalPreset, normalize_batch
from imgcls.errors import CheckpointError, DataError, ImgclsError, model_not_found
from imgcls.inference.backend import BACKENDS, LoadedModel, load_model_file
from imgcls.models.chunked import CPU_SLICE
from imgcls.models.ood import DEFAULT_REJECT_RATE, split_outputs, threshold_for
from imgcls.models.task import is_multilabel
from imgcls.rundir import RunDir
from imgcls.runtime import cpu_loader_workers

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    path: str
    label: str
    score: float
    topk: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] | None = None  # multi-label models: every class over its threshold
    unknown: bool = False  # the OOD score is above the model's threshold: none of its classes
    ood_score: float | None = None  # None for models without OOD data

    def to_dict(self) -> dict[str, Any]:
        if self.labels is not None:
            return {"path": self.path, "labels": self.labels, "topk": self.topk}
        return {"path": self.path, "label": self.label, "score": self.score, "topk": self.topk,
                "unknown": self.unknown, "ood_score": self.ood_score}


def usable_device(device: str) -> str:
    """``device`` when this machine can run a model there; ImgclsError (exit 2) naming the fix otherwise."""
    try:
        kind = torch.device(device)
    except RuntimeError:
        kind = None
    if kind is None or kind.type not in ("cpu", "cuda"):
        raise ImgclsError(f"--device {device}: give cpu or cuda (cuda:1 for the second GPU)")
    if kind.type == "cuda":
        if not torch.cuda.is_available():
            raise ImgclsError(f"--device {device}: this machine has no usable CUDA GPU; use --device cpu")
        if kind.index is not None and kind.index >= torch.cuda.device_count():
            raise ImgclsError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def resolve_model_path(path: str | Path) -> Path:
    """A run directory becomes its best checkpoint; files are checked to exist and be known."""
    from imgcls.inference.hf_folder_backend import is_hf_folder

    path = Path(path).expanduser()
    if is_hf_folder(path) and not RunDir.is_run_dir(path):
        return path  # a Hugging Face folder (imgcls export --format hf)
    if path.is_dir():
        chosen = RunDir.open(path).best_checkpoint
        if chosen.name != RunDir.BEST:
            log.warning("%s has no %s (no epoch finished validation, or it was removed): using %s, the latest "
                        "epoch's weights; pass a checkpoint file to choose", path, RunDir.BEST, chosen.name)
        return chosen
    if not path.is_file():
        raise model_not_found(path)
    if path.suffix.lower() not in BACKENDS:
        raise CheckpointError(f"{path}: unknown model file type '{path.suffix}'; "
                              f"give a run directory, .pt, .onnx, .ts or .xml file")
    return path


def expand_image_paths(inputs: Iterable[str | Path]) -> list[str]:
    """Files as given, folders walked (sorted) for image files; missing inputs are an error."""
    inputs = list(inputs)
    paths: list[str] = []
    for item in inputs:
        item = Path(item).expanduser()
        if item.is_dir():
            found, ignored = walk_files(item)
            report_ignored(ignored, item)
            if not found:
                log.warning("no images in %s (looked for %s)", item, " ".join(sorted(IMAGE_EXTENSIONS)))
            paths.extend(found)
        elif item.is_file():
            paths.append(str(item))
        else:
            raise DataError(f"image or folder not found: {item}")
    if not paths:
        raise DataError(f"no image files in {', '.join(str(i) for i in inputs)}; "
                        f"give image files or folders holding some ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths


class _PathDataset(Dataset):
    """(tensor, index, None) per path; a file that cannot be decoded yields (empty tensor, index, reason),
    so the reason reaches the main process, where it is logged, from any worker."""

    def __init__(self, paths: Sequence[str], transform: Callable[[Image.Image], torch.Tensor], draft_size: int):
        self.paths, self.transform, self.draft_size = paths, transform, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str | None]:
        try:
            return self.transform(load_image(self.paths[index], self.draft_size)), index, None
        except ImageLoadError as exc:
            return torch.empty(0), index, exc.detail


def _collate(items: list[tuple[torch.Tensor, int, str | None]]) -> tuple[torch.Tensor | None, list[int],
                                                                       dict[int, str]]:
    good = [(t, i) for t, i, error in items if error is None]
    failed = {i: error for _, i, error in items if error is not None}
    batch = torch.stack([t for t, _ in good]) if good else None
    return batch, [i for _, i in good], failed


class Predictor:
    """Labelled probabilities from a run directory, checkpoint, ONNX or TorchScript file."""

    def __init__(self, loaded: LoadedModel, source: Path, reject_rate: float | None = DEFAULT_REJECT_RATE):
        self.backend, self.classes, self.preprocess = loaded.backend, loaded.classes, loaded.preprocess
        self.info, self.source = loaded.info, source
        self.transform = EvalPreset(self.preprocess)
        self.multilabel = is_multilabel(self.info)
        # Per-class decision thresholds of a multi-label model (chosen on held-out data at training time).
        self.thresholds = np.asarray(self.info.get("thresholds") or [0.5] * len(self.classes), dtype=np.float32)
        self.reject_rate = reject_rate
        # Images scoring above it are "unknown"; None: never (no OOD data in the model, or --no-reject).
        self.threshold = threshold_for(self.info.get("ood"), reject_rate)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu",
             reject_rate: float | None = DEFAULT_REJECT_RATE) -> Predictor:
        """``reject_rate``: the share of known (val) images to call unknown; None never answers unknown."""
        if reject_rate is not None and not 0 <= reject_rate < 1:
            raise DataError(f"--reject-rate must be at least 0 and below 1 (got {reject_rate:g}); "
                            f"0.05 rejects 5% of the known images, --no-reject turns unknown answers off")
        device = usable_device(device)
        model_path = resolve_model_path(path)
        if model_path.is_dir():
            from imgcls.inference.hf_folder_backend import load_hf_folder

            return cls(load_hf_folder(model_path, device), model_path, reject_rate)
        return cls(load_model_file(model_path, device), model_path, reject_rate)

    def outputs(self, batch: torch.Tensor, forward: Callable[[torch.Tensor], Any] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(class probabilities, OOD scores or None) for a preprocessed batch (N, 3, H, W); ``forward``: the
        backend's, or its :meth:`per_core` one."""
        logits, scores = split_outputs((forward or self.backend)(batch))
        return self.activate(logits), scores

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over classes, or one sigmoid per class for a multi-label model."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities for a preprocessed batch (N, 3, H, W)."""
        return self.outputs(batch)[0]

    def predict_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Probabilities (N, classes) for RGB PIL images."""
        if not images:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return self.probabilities(torch.stack([self.transform(image) for image in images])).numpy()

    def label_images(self, images: Sequence[Image.Image], names: Sequence[str | None], topk: int = 5
                     ) -> list[Prediction]:
        """Labelled answers ("unknown" included) for RGB PIL images, named by ``names``."""
        if not images:
            return []
        probs, scores = self.outputs(torch.stack([self.transform(image) for image in images]))
        return [self.labelled(name, row, topk, None if scores is None else float(scores[i]))
                for i, (name, row) in enumerate(zip(names, probs.numpy()))]

    def iter_probabilities(self, paths: Sequence[str], batch_size: int = 32, workers: int | None = None):  # noqa: ANN201
        """Yields (indices, probabilities, failed indices) per batch, decoding in parallel workers.

        Workers send uint8 crops (a quarter of the bytes of float ones) and the batch is normalised
        here in one pass."""
        for indices, probs, _, failed in self.iter_answers(paths, batch_size, workers):
            yield indices, probs, failed

    def iter_answers(self, paths: Sequence[str], batch_size: int = 32, workers: int | None = None):  # noqa: ANN201
        """:meth:`iter_probabilities` with the OOD scores: (indices, probabilities, scores or None, failed)."""
        dataset = _PathDataset(paths, UInt8EvalPreset(self.preprocess), self.preprocess.resize_size)
        per_core = self.backend.per_core() if workers is None else None
        if per_core is not None and len(paths) > CPU_SLICE:
            yield from self._iter_per_core(dataset, per_core)
            return
        if workers is None:
            workers = cpu_loader_workers() if len(paths) > batch_size else 0
        for collated in DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate):
            yield self._answer(paths, collated, self.backend)

    def _answer(self, paths: Sequence[str], collated: tuple[torch.Tensor | None, list[int], dict[int, str]],
                forward: Callable[[torch.Tensor], Any]) -> tuple[list[int], np.ndarray, np.ndarray | None, list[int]]:
        """(indices, probabilities, OOD scores or None, failed indices) of one collated batch of uint8 crops;
        failures are logged."""
        batch, indices, failed = collated
        for index, reason in failed.items():
            log.warning("skipped %s: %s", paths[index], reason)
        if batch is None:
            return indices, np.zeros((0, len(self.classes)), dtype=np.float32), None, list(failed)
        logits, scores = split_outputs(forward(normalize_batch(batch, self.preprocess)))
        return (indices, self.activate(logits).numpy(), None if scores is None else scores.numpy(), list(failed))

    def _iter_per_core(self, dataset: _PathDataset, forward: Callable[[torch.Tensor], torch.Tensor]):  # noqa: ANN202
        """:meth:`iter_probabilities` with one thread per core, each decoding and running slices of
        :data:`CPU_SLICE` images through a single-threaded ``forward`` (Pillow, torchvision and
        onnxruntime release the GIL while they work)."""
        count = len(dataset)

        def run(indices: range) -> tuple[list[int], np.ndarray, np.ndarray | None, list[int]]:
            return self._answer(dataset.paths, _collate([dataset[i] for i in indices]), forward)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # each thread's resizing and normalising stays on its own core
        slices = (range(i, min(i + CPU_SLICE, count)) for i in range(0, count, CPU_SLICE))
        try:
            with ThreadPoolExecutor(max(1, threads)) as pool:
                # A few slices per thread in flight, not all of them: answers wait for the reader in bounded memory.
                pending = deque(pool.submit(run, s) for s in itertools.islice(slices, 4 * max(1, threads)))
                while pending:
                    answer = pending.popleft().result()
                    pending.extend(pool.submit(run, s) for s in itertools.islice(slices, 1))
                    yield answer
        finally:
            torch.set_num_threads(threads)

    def labelled(self, path: str, probs: np.ndarray, topk: int = 5, ood_score: float | None = None) -> Prediction:
        """The labelled answer for one image; ``ood_score`` (from :meth:`outputs`) decides "unknown"."""
        order = np.argsort(-probs)[:max(1, min(topk, len(self.classes)))]
        top = [{"label": self.classes[i], "score": round(float(probs[i]), 6)} for i in order]
        labels = None
        if self.multilabel:
            chosen = [i for i in np.argsort(-probs) if probs[i] >= self.thresholds[i]]
            labels = [{"label": self.classes[i], "score": round(float(probs[i]), 6)} for i in chosen]
        score = None if ood_score is None else round(float(ood_score), 6)
        unknown = score is not None and self.threshold is not None and score > self.threshold
        return Prediction(path, top[0]["label"], top[0]["score"], top, labels, unknown, score)

    def iter_predict(self, inputs: Iterable[str | Path] | str | Path, topk: int = 5, batch_size: int = 32,
                     progress: Callable[[int, int], None] | None = None) -> Iterator[Prediction]:
        """Predictions for image files and folders, in input order, as each batch is answered (memory stays
        bounded however many files there are); unreadable files are named and left out."""
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        paths = expand_image_paths(inputs)
        answered = done = 0
        for indices, probs, scores, failed in self.iter_answers(paths, batch_size):
            for row, (index, row_probs) in enumerate(zip(indices, probs)):
                yield self.labelled(paths[index], row_probs, topk, None if scores is None else scores[row])
            answered += len(indices)
            done += len(indices) + len(failed)
            if progress:
                progress(done, len(paths))
        if paths and not answered:
            raise DataError(f"none of the {len(paths)} input files could be read as an image")

    def predict(self, inputs: Iterable[str | Path] | str | Path, topk: int = 5, batch_size: int = 32,
                progress: Callable[[int, int], None] | None = None) -> list[Prediction]:
        """:meth:`iter_predict` as a list."""
        return list(self.iter_predict(inputs, topk, batch_size, progress))
