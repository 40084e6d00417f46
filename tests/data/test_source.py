"""The three DATA forms resolve to the right classes, splits and samples."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from imgcls.data.presets import EvalPreset, Preprocess
from imgcls.data.source import resolve_data
from imgcls.errors import DataError
from tests.helpers import make_class_tree, write_cifar_batches


def test_train_val_tree(tiny_data: Path) -> None:
    source = resolve_data(tiny_data)
    assert source.kind == "train-val"
    assert source.classes == ["checker", "stripes_h", "stripes_v"]
    assert source.splits == ["train", "val"]
    assert source.counts("train") == {"checker": 24, "stripes_h": 24, "stripes_v": 24}
    assert source.counts("val") == {"checker": 8, "stripes_h": 8, "stripes_v": 8}
    assert source.split is None  # nothing to record: the user's own split


def test_class_folder_tree_is_split_stratified_and_seeded(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "flat", ["a", "b"], per_class=10)
    make_class_tree(root, ["c"], per_class=5, seed=3)
    source = resolve_data(root, val_split=0.2, seed=7)
    assert source.kind == "split"
    assert source.counts("val") == {"a": 2, "b": 2, "c": 1}
    assert source.counts("train") == {"a": 8, "b": 8, "c": 4}
    assert not set(source.paths("train")) & set(source.paths("val"))

    again = resolve_data(root, val_split=0.2, seed=7)
    other = resolve_data(root, val_split=0.2, seed=8)
    assert again.paths("val") == source.paths("val")
    assert other.paths("val") != source.paths("val")

    # split.json reproduces the same split even after new files appear in the folder.
    make_class_tree(root, ["a"], per_class=5, seed=9, start=100)
    replayed = resolve_data(root, recorded_split=source.split)
    assert replayed.paths("val") == source.paths("val")
    assert replayed.paths("train") == source.paths("train")


def test_train_without_val_holds_out_part_of_train(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "data" / "train", ["x", "y"], per_class=10)
    source = resolve_data(tmp_path / "data", val_split=0.3)
    assert source.counts("val") == {"x": 3, "y": 3}
    assert source.split is not None


def test_non_images_ignored_and_broken_images_named(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "messy", ["cats", "dogs"], per_class=4)
    (root / "cats" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "cats" / "Thumbs.db").write_bytes(b"\x00\x01")
    (root / "dogs" / "notes.txt").write_text("not a picture")
    (root / "dogs" / "fake.jpg").write_text("this is text saved as .jpg")
    source = resolve_data(root, val_split=0.25)
    assert sum(source.counts("train").values()) + sum(source.counts("val").values()) == 8
    assert [Path(s.path).name for s in source.skipped] == ["fake.jpg"]


def test_single_class_and_empty_and_missing_are_user_errors(tmp_path: Path) -> None:
    one = make_class_tree(tmp_path / "one", ["only"], per_class=3)
    with pytest.raises(DataError, match="only one class"):
        resolve_data(one)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        resolve_data(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        resolve_data(tmp_path / "nowhere")


def test_korean_class_names(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "곤충", ["개미", "벌"], per_class=5)
    source = resolve_data(root, val_split=0.2)
    assert source.classes == ["개미", "벌"]


def test_cifar10_python_batches(tmp_path: Path) -> None:
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    source = resolve_data(f"cifar10:{tmp_path}")
    assert source.kind == "cifar10"
    assert source.classes[:2] == ["plane", "car"]
    assert len(source.labels("train")) == 40 and len(source.labels("val")) == 20
    image, label = source.dataset("val", EvalPreset(Preprocess(32, crop_pct=1.0)))[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 3


class _Exploit:
    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path("/tmp/imgcls-cifar-exploit-ran"),))


def test_cifar10_batch_that_would_run_code_is_refused(tmp_path: Path) -> None:
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    marker = Path("/tmp/imgcls-cifar-exploit-ran")
    marker.unlink(missing_ok=True)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit()}))
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        resolve_data(f"cifar10:{tmp_path}")
    assert not marker.exists()
