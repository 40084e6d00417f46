"""Batched folder prediction: same answers as one image at a time, in input order, bad files named and skipped."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from imgcls.errors import DataError
from imgcls.inference.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(tiny_run: Path) -> Predictor:
    return Predictor.load(tiny_run)


def test_batched_parallel_decoding_gives_the_per_image_answers(predictor, tiny_data):
    folder = tiny_data / "val"
    per_core = predictor.predict(folder)  # the default on CPU: a thread per core, slices of 8
    paths = [p.path for p in per_core]
    one_by_one = [predictor.labelled(paths[i], row) for indices, probs, _ in
                  predictor.iter_probabilities(paths, batch_size=1, workers=0) for i, row in zip(indices, probs)]
    assert [p.label for p in per_core] == [p.label for p in one_by_one]
    assert [p.score for p in per_core] == pytest.approx([p.score for p in one_by_one], abs=1e-5)
    batched = list(predictor.iter_probabilities(paths, batch_size=5, workers=2))  # decoding processes
    assert sum(len(indices) for indices, _, _ in batched) == len(one_by_one) == 24
    for indices, probs, failed in batched:
        assert failed == []
        for index, row in zip(indices, probs):
            assert predictor.classes[int(row.argmax())] == one_by_one[index].label
            assert float(row.max()) == pytest.approx(one_by_one[index].score, abs=1e-5)


def test_folders_are_walked_in_order_and_bad_files_are_named_and_skipped(predictor, tiny_data, tmp_path, caplog):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
    good = sorted((tiny_data / "val" / "checker").glob("*.png"))[:3]
    shutil.copy(good[0], tmp_path / "b" / "1.png")
    shutil.copy(good[1], tmp_path / "a" / "2.png")
    shutil.copy(good[2], tmp_path / "a" / "1.png")
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "a" / "notes.txt").write_text("ignored: not an image file")
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        results = predictor.predict(tmp_path, batch_size=2)
    assert [Path(r.path).relative_to(tmp_path).as_posix() for r in results] == ["a/1.png", "a/2.png", "b/1.png"]
    assert "broken.jpg" in caplog.text


def test_no_readable_image_is_a_data_error(predictor, tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"nothing")
    with pytest.raises(DataError, match="could be read"):
        predictor.predict(tmp_path)



def test_a_run_without_best_pt_says_it_predicts_with_last_pt(tiny_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "best.pt").unlink()
    with caplog.at_level(logging.WARNING):
        loaded = Predictor.load(run)
    assert loaded.source.name == "last.pt"
    assert any("no best.pt" in r.getMessage() and "last.pt" in r.getMessage() for r in caplog.records)
