"""Embeddings of folders (the features feature extraction trains on, from the same cache) and similar images."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from imgcls import Classifier
from imgcls.training import embeddings as embeddings_module
from imgcls.data.presets import EvalPreset
from imgcls.training.embeddings import EmbeddingModel, nearest
from imgcls.errors import CheckpointError
from imgcls.models.checkpoint import MODULE_PREFIX
from imgcls.models.metadata import checkpoint_meta
from imgcls.models.factory import create_model
from imgcls.training.features import embed
from tests.helpers import run_cli


def test_embed_writes_the_backbone_features_of_every_image_and_reads_them_back_from_the_cache(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    classifier = Classifier.load(tiny_run)
    found = classifier.embed(tiny_data / "val", out=tmp_path / "e.parquet")
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column_names == ["path", "embedding"] and table.num_rows == len(found) == 24
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert table.column("path").to_pylist() == found.paths
    np.testing.assert_array_equal(vectors, found.vectors)

    model = EmbeddingModel.load(tiny_run)
    image = EvalPreset(model.preprocess)(Image.open(found.paths[5]).convert("RGB"))
    with torch.inference_mode():
        direct = embed(model.model.eval(), image[None])[0].numpy()
    np.testing.assert_allclose(found.vectors[5], direct, atol=1e-4, rtol=1e-4)

    with caplog.at_level(logging.INFO, logger="imgcls"):
        again = classifier.embed(tiny_data / "val", out=tmp_path / "e.npy")
    assert "24 images from the cache" in caplog.text
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), found.vectors)
    with open(tmp_path / "e.csv", newline="", encoding="utf-8") as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == again.paths


@pytest.mark.slow
def test_exported_models_have_no_embeddings_and_say_to_pass_the_run(tmp_path: Path) -> None:
    exported = tmp_path / "best.onnx"
    exported.write_bytes(b"onnx")
    with pytest.raises(CheckpointError, match="pass the run directory"):
        EmbeddingModel.load(exported)
    result = run_cli("similar", exported, exported, "--in", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def pretrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """efficientnet_lite0 with its offline ImageNet weights as an imgcls checkpoint (no training needed)."""
    created = create_model("efficientnet_lite0", 2, pretrained=True)
    path = tmp_path_factory.mktemp("lite0") / "best.pt"
    torch.save({"imgcls": checkpoint_meta(created.spec, ["ants", "bees"], created.preprocess),
                "state_dict": {MODULE_PREFIX + k: v for k, v in created.model.state_dict().items()}}, path)
    return path


@pytest.mark.slow
def test_similar_answers_the_query_first_then_mostly_the_same_class(pretrained_checkpoint: Path, ants_bees: Path,
                                                                    tmp_path: Path) -> None:
    folder = ants_bees / "val"
    classifier = Classifier.load(pretrained_checkpoint)
    queries = sorted(folder.rglob("*.jpg"))[::3]  # every third photo: 51 queries of the 153
    same_class = 0
    for query in queries:
        found = classifier.similar(query, folder, top=3)
        assert len(found) == 3 and Path(found[0]["path"]).samefile(query)
        assert found[0]["score"] == pytest.approx(1.0) and found[1]["score"] >= found[2]["score"]
        same_class += Path(found[1]["path"]).parent.name == query.parent.name
    assert same_class >= 0.8 * len(queries)

    outside = tmp_path / "query.jpg"
    shutil.copy(queries[0], outside)  # the same picture, not in the folder: its copy comes first
    found = classifier.similar(outside, folder, top=2)
    assert Path(found[0]["path"]).samefile(queries[0]) and found[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_the_approximate_index_for_large_folders_finds_what_exact_search_finds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    query = vectors[17] + 0.01 * rng.normal(size=32).astype(np.float32)
    exact = nearest(query, vectors, 5)
    monkeypatch.setattr(embeddings_module, "ANN_FROM", 100)
    approximate = nearest(query, vectors, 5)
    assert exact[0][0] == approximate[0][0] == 17
    assert len({r for r, _ in exact} & {r for r, _ in approximate}) >= 4
    assert [s for _, s in approximate] == pytest.approx([s for _, s in exact], abs=1e-3)
