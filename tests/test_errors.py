"""Every user mistake: exit code 2, one `error:` line naming the thing, no traceback.

Each case runs the CLI's own entry point (``imgcls.cli.main``: parse, call, map errors to exit codes)
in this process, so the whole table costs one torch import; a representative row per command and
loader also runs as the real ``python -m imgcls`` executable.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

from tests.helpers import make_train_val, run_cli, run_main


def _evil_payload(marker: Path):  # noqa: ANN202
    class Booby:
        def __reduce__(self):  # unpickling this calls os.system and creates the marker file
            return (os.system, (f"touch {marker}",))

    return Booby()


@pytest.fixture(scope="session")
def bad(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """A folder of bad inputs: booby-trapped, corrupt, foreign checkpoints; broken configs; odd data folders."""
    import pickle

    import torch

    root = tmp_path_factory.mktemp("bad")
    marker = root / "PWNED"
    torch.save({"imgcls": _evil_payload(marker), "state_dict": {}}, root / "evil.pt")
    (root / "evil_pickle.pt").write_bytes(pickle.dumps(_evil_payload(marker)))
    (root / "garbage.pt").write_bytes(b"not a checkpoint")
    best = (tiny_run / "best.pt").read_bytes()
    (root / "truncated.pt").write_bytes(best[: len(best) // 2])
    torch.save({"state_dict": {"w": torch.zeros(1)}}, root / "foreign.pt")
    (root / "bad.yaml").write_text("epochs: [1,\n  lr: 3\n")
    (root / "unknown.yaml").write_text("epochz: 3\n")
    (root / "list.yaml").write_text("- 1\n")
    (root / "latin1.yaml").write_bytes("epochs: 3 # caf\xe9\n".encode("latin-1"))
    (root / "empty").mkdir()
    make_train_val(root / "one_class", ["only"], train=3, val=1)
    for name in ("a", "b"):
        (root / "text_only" / name).mkdir(parents=True)
        (root / "text_only" / name / "x.jpg").write_text("not a photo")
    make_train_val(root / "other_classes", ["x", "y"], train=2, val=2)
    (root / "notes.txt").write_text("hello")
    _foreign_models(root)
    for name in ("evil_run", "damaged_config", "bad_config_value"):
        shutil.copytree(tiny_run, root / name)
    for checkpoint in ("best.pt", "last.pt"):
        shutil.copy(root / "evil.pt", root / "evil_run" / checkpoint)
    (root / "damaged_config" / "config.yaml").write_text("epochs: [\n")
    config = (root / "bad_config_value" / "config.yaml").read_text()
    (root / "bad_config_value" / "config.yaml").write_text(config.replace("epochs: 6", "epochs: -6"))
    return root


def _foreign_models(root: Path) -> None:
    """A Hugging Face folder not written by imgcls; .xml files that are no OpenVINO model, lack their .bin,
    or have it cut short; a folder of someone else's files as an export destination."""
    import openvino as ov
    import torch

    (root / "hf_foreign").mkdir()
    (root / "hf_foreign" / "config.json").write_text('{"model_type": "vit", "num_labels": 2}')
    (root / "page.xml").write_text("<html><body>not a model</body></html>")
    (root / "page.bin").write_bytes(b"")
    (root / "lonely.xml").write_text('<?xml version="1.0"?>\n<net name="x" version="11"></net>\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter's tracing deprecation notices
        converted = ov.convert_model(torch.nn.Conv2d(3, 4, 3), example_input=torch.zeros(1, 3, 8, 8))
    ov.save_model(converted, str(root / "truncated.xml"), compress_to_fp16=False)
    weights = (root / "truncated.bin").read_bytes()
    (root / "truncated.bin").write_bytes(weights[: len(weights) // 2])
    (root / "someone_elses").mkdir()
    (root / "someone_elses" / "thesis.tex").write_text("\\documentclass{article}")


T = "{tiny_run}"
CASES = [
    # data
    (["train", "{bad}/missing"], "data folder not found"),
    (["train"], "no DATA given"),
    (["train", "{bad}/empty"], "no images found"),
    (["train", "{bad}/one_class"], "only one class"),
    (["train", "{bad}/text_only"], "no images found"),
    (["train", "{bad}/notes.txt"], "not a file"),
    (["train", "cifar10:{bad}/missing"], "no CIFAR-10 batches"),
    # names and values
    (["train", "{tiny_data}", "--model", "resnet19"], "did you mean resnet18"),
    (["train", "{tiny_data}", "--strategy", "finetuning"], "--strategy"),
    (["train", "{tiny_data}", "--optimizer", "adamx"], "--optimizer"),
    (["train", "{tiny_data}", "--scheduler", "cosin"], "--scheduler"),
    (["train", "{tiny_data}", "--epochs", "0"], "--epochs"),
    (["train", "{tiny_data}", "--lr", "-1"], "--lr"),
    (["train", "{tiny_data}", "--val-split", "1.5"], "--val-split"),
    (["train", "{tiny_data}", "--precision", "8"], "--precision"),
    # config files
    (["train", "{bad}/one_class", "--config", "{bad}/bad.yaml"], "not valid YAML at line"),
    (["train", "{bad}/one_class", "--config", "{bad}/unknown.yaml"], "unknown setting 'epochz' (did you mean epochs?)"),
    (["train", "{bad}/one_class", "--config", "{bad}/list.yaml"], "must be a mapping"),
    (["train", "{bad}/one_class", "--config", "{bad}/latin1.yaml"], "not UTF-8"),
    (["train", "{bad}/one_class", "--config", "{bad}/missing.yaml"], "config file not found"),
    # weights and checkpoints
    (["train", "{tiny_data}", "--model", "small_cnn", "--strategy", "finetune", "--weights", "{bad}/evil.pt"],
     "would call posix.system"),
    (["train", "{tiny_data}", "--model", "small_cnn", "--strategy", "finetune", "--weights", "{bad}/garbage.pt"],
     "garbage.pt is not a PyTorch tensor file"),
    (["train", "{tiny_data}", "--model", "small_cnn", "--strategy", "finetune", "--weights", "{bad}/missing.pt"],
     "weights file not found"),
    (["train", "--resume", "{bad}/evil_run"], "would call posix.system"),
    (["train", "--resume", "{bad}/missing"], "nothing to resume"),
    (["train", "--resume", "{bad}/damaged_config"], "damaged_config/config.yaml"),
    (["train", "--resume", "{bad}/bad_config_value"], "--epochs"),
    (["evaluate", "{bad}/evil.pt", "--data", "{tiny_data}"], "would call posix.system"),
    (["evaluate", "{bad}/evil_pickle.pt", "--data", "{tiny_data}"], "evil_pickle.pt is not a PyTorch tensor file"),
    (["evaluate", "{bad}/truncated.pt", "--data", "{tiny_data}"], "truncated.pt is corrupt"),
    (["evaluate", "{bad}/foreign.pt", "--data", "{tiny_data}"], "not an imgcls checkpoint"),
    (["evaluate", "{bad}/notes.txt"], "unknown model file type"),
    (["evaluate", "{bad}/missing"], "model not found"),
    (["evaluate", "{bad}/empty"], "holds no best.pt or last.pt"),
    (["evaluate", "{bad}/evil_run"], "would call posix.system"),
    (["evaluate", "{bad}/damaged_config"], "damaged_config/config.yaml"),
    (["evaluate", T, "--data", "{bad}/other_classes"], "classes the model was not trained on: x, y"),
    (["evaluate", T, "--split", "test"], "has no test split"),
    (["evaluate", T, "--split", "train"], "--split must be val or test"),
    (["predict", "{bad}/evil.pt", "{bad}/notes.txt"], "would call posix.system"),
    (["predict", T, "{bad}/missing.jpg"], "image or folder not found"),
    (["predict", "{bad}/hf_foreign", "{bad}/notes.txt"], "Hugging Face folder without imgcls metadata"),
    (["predict", "{bad}/page.xml", "{bad}/notes.txt"], "is not an OpenVINO model"),
    (["predict", "{bad}/lonely.xml", "{bad}/notes.txt"], "lonely.bin is missing"),
    (["predict", "{bad}/truncated.xml", "{bad}/notes.txt"], "Incorrect weights"),
    (["export", "{bad}/hf_foreign", "--format", "onnx"], "Hugging Face folder without imgcls metadata"),
    (["export", "{bad}/page.xml", "--format", "hf"], "is not an OpenVINO model"),
    (["export", T, "--format", "hf", "--out", "{bad}/hf_out"], "scratch net"),
    (["export", T, "--format", "hf", "--out", "{bad}/someone_elses"], "not an imgcls export"),
    (["export", T, "--format", "openvino", "--out", "{bad}/model.onnx"], "must end in .xml"),
    (["predict", T, "{bad}/empty"], "no image files in"),
    (["predict", T, "{bad}/text_only"], "could be read as an image"),
    (["split", "{bad}/missing", "--out", "{bad}/split_out"], "not found"),
    (["split", "{bad}/notes.txt", "--out", "{bad}/split_out"], "is a file, not a folder"),
    (["split", "{tiny_data}/train", "--out", "{tiny_data}"], "is not empty"),
    (["split", "{tiny_data}/train", "--out", "{bad}/split_out", "--val", "0.6", "--test", "0.6"], "add up to"),
    (["doctor", "{bad}/missing"], "data folder not found"),
    (["doctor", "{bad}/notes.txt"], "not a file"),
    (["doctor", "cifar10"], "CIFAR-10"),
    (["train", "{tiny_data}", "--out", "{bad}/notes.txt/runs"], "cannot write runs into"),
    (["explain", T, "{tiny_data}/val", "--out", "{bad}/notes.txt"], "cannot write the overlays"),
    (["explain", T, "{bad}/text_only", "--out", "{bad}/overlays"], "could be read as an image"),
    (["compare", T, "--out", "{bad}/notes.txt"], "cannot write the comparison"),
    (["lr-find", "{tiny_data}", "--model", "small_cnn", "--out", "{bad}/notes.txt"], "cannot write lr_find.png"),
    (["split", "{tiny_data}/train", "--out", "{bad}/notes.txt"], "is a file; choose a new --out folder"),
    (["split", "{tiny_data}", "--out", "{bad}/split_out"], "is split already"),
    (["serve", T, "--device", "tpu"], "give cpu or cuda"),
    (["serve", T, "--device", "cuda:99"], "--device cuda:99: this machine has"),  # no GPU, or not 100 of them
]


def _check(code: int, stderr: str, expected: str, marker: Path) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    assert len(errors) == 1 and expected in errors[0], stderr[-2000:]
    assert not marker.exists(), "a booby-trapped checkpoint ran code"


def _argv(args: list[str], bad: Path, tiny_run: Path, tiny_data: Path) -> list[str]:
    (bad / "PWNED").unlink(missing_ok=True)
    return [a.format(bad=bad, tiny_run=tiny_run, tiny_data=tiny_data) for a in args]


@pytest.mark.parametrize("args,expected", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_user_mistake_exits_2_with_one_clear_message(args, expected, bad, tiny_run, tiny_data):
    code, _, stderr = run_main(*_argv(args, bad, tiny_run, tiny_data))
    _check(code, stderr, expected, bad / "PWNED")


def test_unwritable_out_fails_before_the_recipe_search(bad, tiny_data):
    """Zero flags search recipes first (a minute or more on real photos): an --out that cannot hold the run
    must stop the command before that work, not after it."""
    code, _, stderr = run_main("train", str(tiny_data), "--out", str(bad / "notes.txt" / "runs"))
    _check(code, stderr, "choose a folder you can write to with --out", bad / "PWNED")
    assert "auto:" not in stderr and "features" not in stderr, stderr[-2000:]


REAL_EXECUTABLE = [0, 16, 20, 23, 28, 39, 45, 47, 50, 53, 56]  # rows of CASES: one per command and loader


@pytest.mark.slow
@pytest.mark.parametrize("row", REAL_EXECUTABLE, ids=[" ".join(CASES[i][0])[:60] for i in REAL_EXECUTABLE])
def test_real_executable_exits_2_with_one_clear_message(row, bad, tiny_run, tiny_data):
    args, expected = CASES[row]
    result = run_cli(*_argv(args, bad, tiny_run, tiny_data), env={"CUDA_VISIBLE_DEVICES": ""})
    _check(result.returncode, result.stderr, expected, bad / "PWNED")


def test_usage_mistakes_are_reported_by_the_parser_without_traceback(tiny_run):
    code, _, stderr = run_main("predict", str(tiny_run), ".", "--topk", "0")
    assert code == 2 and "Traceback" not in stderr and "--topk" in stderr
