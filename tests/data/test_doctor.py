"""imgcls doctor on a messy folder built from real photos: every planted problem is found, nothing else."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from imgcls.data.doctor import KINDS, diagnose, format_report
from tests.helpers import make_class_tree, make_train_val, messy_example, run_cli

planted = messy_example()


def _relative(path: str, root: Path) -> str:
    return unicodedata.normalize("NFC", str(Path(path).relative_to(root)))


@pytest.fixture(scope="module")
def report(messy: Path):
    return diagnose(messy, workers=1)


def test_every_planted_problem_is_named_with_its_kind(report, messy):
    found = {(_relative(p.path, messy), p.kind) for p in report.problems}
    expected = {**planted.BROKEN, **planted.IGNORED, **planted.DUPLICATES, **planted.LEAKS, **planted.CLASS_PROBLEMS}
    for path, kind in expected.items():
        if path == f"train/{planted.ANTS}/bee_filed_as_ant.jpg":
            # the two copies of one bee photo: either one may carry the label-conflict report
            assert any(k == "duplicate" and "label conflict" in p.detail for p in report.problems
                       for k in [p.kind] if planted.BEES in p.path or "bee_filed" in p.path)
            continue
        assert (path, kind) in found, f"{kind} not reported for {path}"


def test_odd_but_valid_images_are_usable_and_only_flagged_as_odd(report, messy):
    flagged = {}
    for p in report.problems:
        flagged.setdefault(_relative(p.path, messy), set()).add(p.kind)
    for name, mode in planted.ODD.items():
        kinds = flagged.get(f"train/{planted.ANTS}/{name}", set())
        assert kinds <= {"unusual-mode", "tiny"}, (name, kinds)
        assert ("unusual-mode" in kinds) == (mode not in ("RGB",)), name
        assert ("tiny" in kinds) == name.startswith("tiny"), name


def test_no_problem_is_reported_on_an_ordinary_photo(report, messy):
    planted_names = {Path(p).name for p in [*planted.BROKEN, *planted.IGNORED, *planted.DUPLICATES, *planted.LEAKS]}
    planted_names |= set(planted.ODD) | {Path(p).name for p in planted.ALREADY_ODD}
    for problem in report.problems:
        name = Path(problem.path).name
        if problem.kind in ("empty-class", "class-missing-from-split", "imbalance"):
            continue
        # the other half of a planted pair (the original a copy was made from) may carry the report
        assert name in planted_names or problem.kind in ("duplicate", "near-duplicate"), problem


def test_counts_per_split_and_class_with_korean_names(report):
    assert set(report.splits) == {"train", "val"}
    assert set(report.classes) == {planted.ANTS, planted.BEES, planted.EMPTY, planted.OTHER}  # NFC, even val/벌 (NFD)
    assert report.splits["train"][planted.EMPTY] == 0 and report.splits["train"][planted.OTHER] == 6
    assert report.images == sum(report.classes.values()) > 380
    assert report.can_train


def test_every_problem_says_what_to_do(report):
    assert {p.kind for p in report.problems} <= set(KINDS)
    for problem in report.problems:
        assert any(word in problem.detail for word in ("delete", "add ", "remove", "convert", "keep", "fine",
                                                       "skips", "train with")), problem


def test_text_report_groups_problems_by_kind(report):
    text = format_report(report, limit=3)
    assert "leak (2)" in text and "decompression-bomb (1)" in text and "... and" in text


def test_doctor_json_through_the_cli(messy):
    result = run_cli("doctor", messy, "--json", check=True)
    data = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    assert {"images", "classes", "problems", "splits"} <= set(data)
    assert all(set(p) == {"path", "kind", "detail"} for p in data["problems"])
    assert {p["kind"] for p in data["problems"]} >= {"corrupt", "not-an-image", "decompression-bomb", "leak",
                                                     "empty-class", "imbalance", "duplicate", "near-duplicate"}


def test_class_folder_tree_duplicates_warn_of_leaks_after_splitting(tmp_path):
    root = make_class_tree(tmp_path / "flat", ["a", "b"], 5, size=48)
    (root / "a" / "copy.png").write_bytes((root / "a" / "0000.png").read_bytes())
    report = diagnose(root, workers=1)
    assert report.layout == "class-folders" and list(report.splits) == ["all"]
    [duplicate] = [p for p in report.problems if p.kind == "duplicate"]
    assert "copy.png" in duplicate.path and "leak" in duplicate.detail


@pytest.mark.parametrize("classes,kind", [([], "no-images"), (["only"], "single-class")])
def test_data_that_cannot_train_is_marked(tmp_path, classes, kind):
    make_train_val(tmp_path, classes, train=3, val=1) if classes else (tmp_path / "train" / "x").mkdir(parents=True)
    report = diagnose(tmp_path, workers=1)
    assert kind in {p.kind for p in report.problems} and not report.can_train


@pytest.mark.slow
def test_train_names_broken_files_and_warns_about_leaks_and_imbalance(messy, tmp_path):
    result = run_cli("train", messy, "--model", "small_cnn", "--epochs", "1", "--img-size", "32", "--workers", "0",
                     "--out", tmp_path, check=True)
    log = unicodedata.normalize("NFC", result.stderr)
    for path in planted.BROKEN:
        assert f"skipped {unicodedata.normalize('NFC', str(messy / path))}" in log
    for path in planted.LEAKS:
        assert Path(path).name in log
    assert "leak: 2 files" in log and "imbalance: 1 class" in log and "Traceback" not in log
    assert Path(result.stdout.strip().splitlines()[-1]).is_dir()


@pytest.mark.slow
def test_predict_reads_every_odd_but_valid_image(messy, tiny_run):
    result = run_cli("predict", tiny_run, messy / "odd", "--json", check=True)
    predicted = {Path(r["path"]).name for r in json.loads(result.stdout)}
    assert predicted == set(planted.ODD)
