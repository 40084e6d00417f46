"""Predictions as files: a CSV pandas reads, images sorted by class that a second run never overwrites."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from imgcls import Classifier
from imgcls.errors import ImgclsError
from imgcls.inference import outputs
from imgcls.inference.outputs import MANIFEST, Sorter
from tests.helpers import run_cli


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (inode, mtime) of every image under root."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and p.name != MANIFEST}


@pytest.mark.slow
def test_predict_csv_and_sort_into_the_bundled_val_photos_twice_overwrites_nothing(
        tiny_run: Path, ants_bees: Path, tmp_path: Path) -> None:
    val = ants_bees / "val"
    count = sum(1 for p in val.rglob("*.jpg"))
    sorted_dir, table = tmp_path / "sorted", tmp_path / "predictions.csv"
    result = run_cli("predict", tiny_run, val, "--csv", table, "--sort-into", sorted_dir, "--jsonl", check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # one object per line, nothing else
    frame = pd.read_csv(table)
    assert list(frame.columns) == ["path", "label", "score", "topk", "unknown"]
    assert len(frame) == len(lines) == count
    assert frame["label"].tolist() == [r["label"] for r in lines]
    placed = _files(sorted_dir)
    assert len(placed) == count
    for path, label in zip(frame["path"], frame["label"]):
        assert os.path.samefile(path, sorted_dir / label / Path(path).name)

    again = run_cli("predict", tiny_run, val, "--csv", table, "--sort-into", sorted_dir, check=True)
    assert len(again.stdout.splitlines()) == count
    assert _files(sorted_dir) == placed  # same files, same inodes, untouched
    manifest = pd.read_csv(sorted_dir / MANIFEST)
    assert len(manifest) == 2 * count
    assert set(manifest["action"][count:]) == {"already there"}


def test_a_name_taken_by_another_file_gets_a_suffix_and_copies_stand_in_for_links(
        tmp_path: Path, ants_bees: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = sorted((ants_bees / "val" / "ants").glob("*.jpg"))[:2]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = shutil.copy(photos[0], tmp_path / "a" / "x.jpg"), shutil.copy(photos[1], tmp_path / "b" / "x.jpg")
    sorter = Sorter(tmp_path / "out")
    sorter.add({"path": first, "label": "ants"})

    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(outputs.os, "link", no_links)
    sorter.add({"path": second, "label": "ants"})
    sorter.add({"path": first, "label": "ants"})
    sorter.close()
    manifest = pd.read_csv(tmp_path / "out" / MANIFEST)
    assert manifest["action"].tolist() == ["linked", "copied", "already there"]
    assert manifest["destination"].map(lambda p: Path(p).name).tolist() == ["x.jpg", "x-1.jpg", "x.jpg"]
    assert (tmp_path / "out" / "ants" / "x-1.jpg").read_bytes() == Path(second).read_bytes()
    assert not os.path.samefile(second, tmp_path / "out" / "ants" / "x-1.jpg")  # a copy


def test_move_moves_the_images_and_a_stream_of_answers_writes_the_csv_only_when_complete(
        tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(tiny_data / "val", folder)
    count = len(_files(folder))
    classifier = Classifier.load(tiny_run)
    stream = classifier.iter_predict(folder, csv=tmp_path / "p.csv", sort_into=tmp_path / "by_class", move=True)
    first = next(stream)
    assert not (tmp_path / "p.csv").exists()  # no half-written CSV where a reader looks
    rest = list(stream)
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1 + len(rest) == count
    assert _files(folder) == {}
    assert (tmp_path / "by_class" / first["label"] / Path(first["path"]).name).is_file()
    with pytest.raises(ImgclsError, match="--sort-into"):
        classifier.predict(tiny_data / "val", move=True)


def test_a_sorted_folder_inside_the_input_folder_is_not_predicted_again(tiny_run: Path, tiny_data: Path,
                                                                         tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(tiny_data / "val", folder)
    classifier = Classifier.load(tiny_run)
    first = classifier.predict(folder, sort_into=folder / "sorted")
    placed = _files(folder / "sorted")
    again = classifier.predict(folder, sort_into=folder / "sorted")
    assert [r["path"] for r in again] == [r["path"] for r in first] and len(placed) == len(first) == 24
    assert _files(folder / "sorted") == placed


def test_a_multi_label_answer_goes_into_each_of_its_label_folders_and_one_csv_row(tmp_path: Path,
                                                                                  ants_bees: Path) -> None:
    photo = shutil.copy(sorted((ants_bees / "val" / "ants").glob("*.jpg"))[0], tmp_path / "x.jpg")
    answer = {"path": photo, "labels": [{"label": "ant", "score": 0.9}, {"label": "flower", "score": 0.7}],
              "topk": [{"label": "ant", "score": 0.9}, {"label": "flower", "score": 0.7}]}
    assert outputs.csv_row(answer)[:3] == [photo, "ant;flower", 0.9]
    sorter = Sorter(tmp_path / "out", move=True)
    sorter.add(answer)
    sorter.add({**answer, "path": str(tmp_path / "out" / "ant" / "x.jpg"), "labels": []})
    sorter.close()
    assert not Path(photo).exists()  # moved once, then linked into the second folder
    assert os.path.samefile(tmp_path / "out" / "ant" / "x.jpg", tmp_path / "out" / "flower" / "x.jpg")
    assert pd.read_csv(tmp_path / "out" / MANIFEST)["action"].tolist() == ["moved", "linked"]
