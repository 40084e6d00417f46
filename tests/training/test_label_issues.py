"""Suspect labels: images moved into the wrong class folder come out first."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgcls.training.label_issues import KIND, suspect_labels


def test_flipped_labels_of_separable_embeddings_rank_first() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 16))
    labels = np.repeat(np.arange(3), 30)
    features = centres[labels] + rng.normal(0, 1, (len(labels), 16))
    flipped = [3, 40, 75]
    given = labels.copy()
    given[flipped] = (labels[flipped] + 1) % 3
    paths = [f"img{i}.png" for i in range(len(labels))]
    found = suspect_labels(features, given, paths, ["a", "b", "c"])
    assert {s.path for s in found[:3]} == {paths[i] for i in flipped}
    first = found[0]
    index = paths.index(first.path)
    assert first.given == "abc"[given[index]] and first.likely == "abc"[labels[index]]
    assert first.likely in first.to_problem()[2] and first.to_problem()[1] == KIND


def _mislabelled_copy(source: Path, out: Path, per_class: int, moved: int) -> set[str]:
    """``per_class`` photos of each class of ``source``, ``moved`` of them in the other class's folder."""
    names = sorted(p.name for p in source.iterdir() if p.is_dir())
    wrong = set()
    for c, name in enumerate(names):
        files = sorted((source / name).iterdir())[:per_class]
        other = names[1 - c]
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / other).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(files):
            if i % (per_class // (moved // 2)) == 0 and len([w for w in wrong if f"/{other}/" in w]) < moved // 2:
                target = out / other / f"moved-{path.name}"
                wrong.add(str(target))
            else:
                target = out / name / path.name
            shutil.copy(path, target)
    return wrong


@pytest.mark.slow
def test_doctor_labels_finds_photos_moved_into_the_wrong_class(ants_bees: Path, tmp_path: Path) -> None:
    from imgcls.api import doctor

    wrong = _mislabelled_copy(ants_bees / "train", tmp_path / "train", per_class=50, moved=6)
    report = doctor(tmp_path, labels=True).to_dict()
    suspects = [p for p in report["problems"] if p["kind"] == "suspect-label"]
    assert set(suspects[0]) == {"path", "kind", "detail"}
    hits = sum(p["path"] in wrong for p in suspects[:9])
    assert hits >= 5, suspects[:9]
    assert "looks like" in suspects[0]["detail"]


def test_a_class_with_one_image_is_named_when_suspect_labels_cannot_be_looked_for() -> None:
    from imgcls.errors import DataError

    labels = np.array([0] * 6 + [1] * 6 + [2])
    features = np.random.default_rng(0).normal(size=(len(labels), 8))
    with pytest.raises(DataError, match="class '희귀' has 1"):
        suspect_labels(features, labels, [f"{i}.png" for i in range(len(labels))], ["ants", "bees", "희귀"])
