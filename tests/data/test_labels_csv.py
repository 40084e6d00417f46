"""Multi-label data from labels.csv: detection, seeded recorded splits, rows that cannot train named by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls.api import Classifier
from imgcls.config import load_train_config
from imgcls.data.doctor import diagnose
from imgcls.data.source import resolve_data
from imgcls.errors import ConfigError, DataError
from tests.helpers import run_cli


def _images(folder: Path, count: int, prefix: str = "img") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        name = f"{prefix}{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def _csv(folder: Path, rows: list[str]) -> Path:
    path = folder / "labels.csv"
    path.write_text("path,labels\n" + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture()
def one_csv(tmp_path: Path) -> Path:
    names = _images(tmp_path / "pics", 20)
    labels = ["cat;dog", "cat", "dog bird", "bird", "cat dog bird"]
    _csv(tmp_path, [f"pics/{name},{labels[i % len(labels)]}" for i, name in enumerate(names)])
    return tmp_path


def test_one_labels_csv_is_detected_split_seeded_and_reproduced_from_its_record(one_csv: Path):
    source = resolve_data(one_csv, val_split=0.25, seed=3)
    assert source.task == "multilabel" and source.classes == ["bird", "cat", "dog"]
    assert len(source.files["train"]) + len(source.files["val"]) == 20 and len(source.files["val"]) == 5
    assert set(source.counts("val")) == {"bird", "cat", "dog"} and all(source.counts("val").values())
    again = resolve_data(one_csv, val_split=0.5, seed=99, recorded_split=source.split)
    assert again.files == source.files
    assert source.split["train"][0].startswith("pics/")  # paths relative to the data folder
    path, indices = source.files["train"][0]
    _, target = source.dataset("train", lambda image: image)[0]
    assert target.tolist() == [float(i in indices) for i in range(3)]


@pytest.mark.parametrize(("row", "says"), [
    ("pics/img000.png,cat,dog", "expected 2 columns"),
    ("pics/nope.png,cat", "nope.png not found"),
    ("pics/img000.png,bird", "listed again with other labels"),
])
def test_rows_that_cannot_train_are_refused_naming_file_and_line(one_csv: Path, row: str, says: str):
    csv = one_csv / "labels.csv"
    csv.write_text(csv.read_text(encoding="utf-8") + row + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"labels.csv:22: .*{says}"):
        resolve_data(one_csv)


def test_doctor_lists_rows_with_unknown_or_empty_labels_repeats_and_images_without_a_row(tmp_path: Path):
    train = _images(tmp_path / "train", 6)
    _csv(tmp_path / "train", [f"{name},{'cat' if i % 2 else 'cat dog'}" for i, name in enumerate(train[:5])]
         + [f"{train[0]},cat dog"])
    val = _images(tmp_path / "val", 3)
    _csv(tmp_path / "val", [f"{val[0]},cat", f"{val[1]},", f"{val[2]},dgo"])
    report = diagnose(tmp_path)
    kinds = {(Path(p.path).name, p.kind) for p in report.problems}
    assert kinds == {("labels.csv:7", "duplicate-row"), ("img005.png", "unlisted-file"),
                     ("labels.csv:3", "empty-labels"), ("labels.csv:4", "unknown-label"),
                     ("labels.csv:4", "empty-labels")}
    assert report.images == 8 and report.splits["train"] == {"cat": 5, "dog": 3}
    source = resolve_data(tmp_path)
    assert [len(source.files[s]) for s in ("train", "val")] == [5, 3]


def test_a_malformed_labels_csv_is_exit_2_naming_the_row_for_doctor_and_train(one_csv: Path):
    csv = one_csv / "labels.csv"
    csv.write_text(csv.read_text(encoding="utf-8") + "pics/missing.png,cat\n", encoding="utf-8")
    result = run_cli("doctor", one_csv)
    assert result.returncode == 2, result.stderr
    assert "labels.csv:22" in result.stderr and "missing.png not found" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(DataError, match="labels.csv:22: pics/missing.png not found"):  # exit 2 in the CLI
        Classifier.train(one_csv, model="small_cnn", out=str(one_csv / "runs"))


def test_task_flag_must_match_the_data(one_csv: Path, tiny_data: Path):
    from imgcls.training.fit import resolve_task

    with pytest.raises(ConfigError, match="--task multilabel, but .* class folders"):
        resolve_task(load_train_config(task="multilabel"), resolve_data(tiny_data))
    with pytest.raises(ConfigError, match="--mixup assumes one class per image"):
        resolve_task(load_train_config(mixup=0.2), resolve_data(one_csv))
