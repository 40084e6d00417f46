"""CIFAR-10 in its standard "python batches" form (``cifar-10-batches-py``).

The batches are pickles. They are read with an unpickler that only rebuilds numpy arrays and
plain containers, so a crafted file cannot run code (the same rule as our checkpoints).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np

from imgcls.errors import DataError

log = logging.getLogger(__name__)

BATCH_DIR = "cifar-10-batches-py"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"), ("builtins", "bytearray"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnlyUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 python batch ({exc}); re-download CIFAR-10 (python version)") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR-10 python batch; re-download CIFAR-10 (python version)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def find_batches(path: str | Path) -> Path:
    """The folder holding data_batch_* and test_batch: PATH itself or PATH/cifar-10-batches-py."""
    path = Path(path)
    for candidate in (path, path / BATCH_DIR):
        if (candidate / "test_batch").is_file():
            return candidate
    raise DataError(f"no CIFAR-10 batches under {path}: expected {path / BATCH_DIR}/data_batch_1..5 and test_batch "
                    f"(the 'python version' of CIFAR-10)")


def _stack(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError("CIFAR-10 batch has an unexpected shape; re-download CIFAR-10 (python version)")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # NHWC for PIL


def load_cifar10(path: str | Path) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names and {"train": (images NHWC uint8, labels), "test": ...}."""
    folder = find_batches(path)
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files:
        raise DataError(f"no data_batch_* files in {folder}; re-download CIFAR-10 (python version)")
    classes = CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        names = _read_batch(meta).get("label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return classes, {
        "train": _stack([_read_batch(f) for f in train_files]),
        "test": _stack([_read_batch(folder / "test_batch")]),
    }


def is_cifar10_spec(spec: str | Path) -> bool:
    """DATA names CIFAR-10 (``cifar10`` or ``cifar10:PATH``) rather than a folder of images."""
    return str(spec) == "cifar10" or str(spec).startswith("cifar10:")


def cifar10_root(spec: str, cache_dir: Path) -> Path:
    """The folder for DATA ``cifar10`` or ``cifar10:PATH``; downloads into the cache when online."""
    _, _, given = spec.partition(":")
    if given:
        return find_batches(Path(given).expanduser())
    root = cache_dir / "datasets" / "cifar10"
    try:
        return find_batches(root)
    except DataError:
        pass
    log.info("CIFAR-10 not in %s; downloading it (170 MB)", root)
    try:
        from torchvision.datasets import CIFAR10

        os.makedirs(root, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - any download failure means "offline"
        raise DataError(f"CIFAR-10 is not in {root} and could not be downloaded ({exc}); "
                        f"download the python version and pass cifar10:PATH") from None
    return find_batches(root)
