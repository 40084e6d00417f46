"""Classifier(images): the pipeline-style call, answering as predict does, for every form of input."""

from __future__ import annotations

import pytest
from PIL import Image

from imgcls import Classifier
from imgcls.errors import DataError


@pytest.fixture(scope="module")
def classifier(tiny_run):
    return Classifier.load(tiny_run)


def _same(answer, expected) -> bool:
    """Equal answers; scores to 1e-5 (another batch composition may round their last printed digit apart)."""
    if isinstance(expected, dict):
        return isinstance(answer, dict) and answer.keys() == expected.keys() and all(
            _same(answer[k], expected[k]) for k in expected)
    if isinstance(expected, list):
        return isinstance(answer, list) and len(answer) == len(expected) and all(map(_same, answer, expected))
    if isinstance(expected, float):
        return answer == pytest.approx(expected, abs=1e-5)
    return answer == expected


def test_call_forms_answer_as_predict(classifier, tiny_data):
    folder = tiny_data / "val" / "checker"
    expected = classifier.predict(folder, topk=2)
    files = sorted(str(p) for p in folder.iterdir())
    assert _same(classifier(folder, topk=2), expected)
    assert _same(classifier(files, topk=2), expected)
    assert _same(classifier(files[0], topk=2), expected[0])
    with Image.open(files[0]) as opened:
        assert _same(classifier(opened, topk=2), expected[0])  # opened from a file: its path is known
    pictures = [Image.open(f).convert("RGBA") for f in files[:3]]  # odd modes are converted, as predict does
    answers = classifier(pictures, topk=2)
    assert [a["label"] for a in answers] == [e["label"] for e in expected[:3]]
    assert all(a["path"] is None for a in answers)
    assert max(abs(a["score"] - e["score"]) for a, e in zip(answers, expected)) < 1e-4


def test_mixed_lists_are_a_user_error(classifier, tiny_data):
    picture = Image.new("RGB", (32, 32))
    with pytest.raises(DataError, match="not both"):
        classifier([picture, tiny_data / "val"])
