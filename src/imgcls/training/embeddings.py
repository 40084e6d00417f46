"""Embeddings of image folders, and the images nearest to a query.

An embedding is the model's pooled pre-logit feature vector, exactly as feature extraction computes
it, so both share the per-file feature cache: a folder embedded once (or trained on with
feature extraction) is read back, not run through the network again. Nearest images are ranked by
cosine similarity: exactly with numpy for small folders, with a usearch HNSW index past
:data:`ANN_FROM` images.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from imgcls.data.presets import Preprocess
from imgcls.errors import CheckpointError, DataError, ImgclsError, ModelError
from imgcls.inference.predictor import expand_image_paths, resolve_model_path
from imgcls.models.checkpoint import load_checkpoint
from imgcls.rundir import atomic_write_bytes, utf8_name
from imgcls.runtime import cpu_loader_workers
from imgcls.training.features import backbone_hash, file_features, supports_cached_features

ANN_FROM = 20_000  # images in the searched folder from which an approximate index beats exact search
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
OUT_SUFFIXES = (".parquet", ".npy")


@dataclass
class Embeddings:
    """One row of ``vectors`` (float32) per readable image of ``paths``."""

    paths: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class EmbeddingModel:
    model: nn.Module
    preprocess: Preprocess
    arch: dict[str, Any]
    weights: str | None = None  # the backbone's hash, computed once

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingModel:
        """The network of a run directory or checkpoint; exported files have only the classifier's output."""
        model_path = resolve_model_path(path)
        if model_path.suffix.lower() not in TORCH_SUFFIXES:
            raise CheckpointError(f"{model_path}: an exported {model_path.suffix} file has no embedding output; "
                                  f"pass the run directory (or its best.pt) instead")
        checkpoint = load_checkpoint(model_path)
        model = checkpoint.build()
        if not supports_cached_features(model):
            raise ModelError(f"{model_path}: {checkpoint.spec.arch} has no pooled feature output to embed with; "
                             f"use a timm or scratch model")
        return cls(model, checkpoint.preprocess, checkpoint.spec.to_dict())

    def embed(self, inputs: Iterable[str | Path], batch_size: int = 64) -> Embeddings:
        paths = expand_image_paths(inputs)
        workers = cpu_loader_workers() if len(paths) > batch_size else 0
        if self.weights is None:
            self.weights = backbone_hash(self.model)
        vectors, readable = file_features(self.model, paths, self.preprocess, self.arch, batch_size=batch_size,
                                          workers=workers, desc="embeddings", weights=self.weights)
        if not readable:
            raise DataError(f"none of the {len(paths)} input files could be read as an image")
        return Embeddings([paths[i] for i in readable], vectors.numpy().astype(np.float32, copy=False))


# files -----------------------------------------------------------------------------------------
def write_embeddings(embeddings: Embeddings, out: str | Path) -> list[Path]:
    """``out.parquet`` (columns path, embedding), or ``out.npy`` with ``out.csv`` (row, path) beside it;
    each file written atomically. Returns the files written."""
    out = Path(out).expanduser()
    suffix = out.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise ImgclsError(f"--out {out}: give a .parquet or .npy file name")
    try:
        if suffix == ".parquet":
            atomic_write_bytes(out, _parquet_bytes(embeddings))
            return [out]
        buffer = io.BytesIO()
        np.save(buffer, embeddings.vectors)
        index = io.StringIO(newline="")
        writer = csv.writer(index)
        writer.writerow(["row", "path"])
        writer.writerows(enumerate(embeddings.paths))
        atomic_write_bytes(out, buffer.getvalue())
        # a name that is not UTF-8 keeps its bytes, so the row opens the very file
        atomic_write_bytes(out.with_suffix(".csv"), index.getvalue().encode("utf-8", "surrogateescape"))
        return [out, out.with_suffix(".csv")]
    except OSError as exc:
        raise ImgclsError(f"cannot write {exc.filename or out}: {exc.strerror or exc}; "
                          f"free some space or choose another place") from None


def _parquet_bytes(embeddings: Embeddings) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dims = embeddings.vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.vectors.reshape(-1), pa.float32()), dims)
    paths = pa.array([utf8_name(p) for p in embeddings.paths], pa.string())  # parquet strings are UTF-8 only
    table = pa.table({"path": paths, "embedding": column})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


# search ----------------------------------------------------------------------------------------
def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def nearest(query: np.ndarray, vectors: np.ndarray, top: int) -> list[tuple[int, float]]:
    """(row, cosine similarity) of the ``top`` rows of ``vectors`` nearest to ``query``, best first."""
    top = min(top, len(vectors))
    if top <= 0:
        return []
    if len(vectors) < ANN_FROM:
        scores = _unit(vectors) @ _unit(query)
        rows = np.argpartition(-scores, top - 1)[:top]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        return [(int(r), float(scores[r])) for r in rows]
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="cos", dtype="f32")
    index.add(np.arange(len(vectors)), np.ascontiguousarray(vectors, dtype=np.float32))
    found = index.search(np.ascontiguousarray(query, dtype=np.float32), top)
    return [(int(key), 1.0 - float(distance)) for key, distance in zip(found.keys, found.distances)]


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def similar_images(model: EmbeddingModel, image: str | Path, folder: str | Path | Iterable[str | Path],
                   top: int = 10) -> list[dict[str, Any]]:
    """``[{"path", "score"}]``: the ``top`` images of ``folder`` most like ``image`` (cosine similarity of
    embeddings), the query's own file first when it is in the folder."""
    image = Path(image).expanduser()
    if not image.is_file():
        raise DataError(f"image not found: {image}")
    found = model.embed([folder] if isinstance(folder, (str, Path)) else folder)
    own = next((i for i, p in enumerate(found.paths) if _same_path(p, str(image))), None)
    query = found.vectors[own] if own is not None else model.embed([image]).vectors[0]
    ranked = nearest(query, found.vectors, top)
    if own is not None:
        ranked = [(own, 1.0)] + [(r, s) for r, s in ranked if r != own][:max(0, top - 1)]
    return [{"path": found.paths[r], "score": round(s, 6)} for r, s in ranked]
