"""--format hf: a folder that transformers' pipeline and timm load offline, unchanged, with imgcls's answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from imgcls import Classifier  # noqa: E402
from imgcls.errors import CheckpointError, ExportError  # noqa: E402
from imgcls.export.exporter import export_model  # noqa: E402
from imgcls.inference.predictor import Predictor, expand_image_paths  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def timm_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timm's tiny test_efficientnet trained for one epoch on 32-pixel pictures."""
    return Classifier.train(tiny_data, model="test_efficientnet", pretrained=False, strategy="scratch", epochs=1,
                            batch_size=24, workers=0, img_size=32, out=str(tmp_path_factory.mktemp("timm-runs")),
                            name="teff").path


@pytest.fixture(scope="module")
def hf_summary(timm_run: Path) -> dict:
    return export_model(timm_run, "hf").to_dict()


def test_export_checks_the_folder_through_transformers(hf_summary, timm_run):
    folder = Path(hf_summary["path"])
    assert folder == timm_run / "best-hf"
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert hf_summary["checked_on"] == "24 val images" and hf_summary["tolerance"] == 0.02
    assert hf_summary["parity"]["top1_agreement"] >= 0.99 and hf_summary["parity"]["max_abs_diff"] <= 0.02
    config = json.loads((folder / "config.json").read_text())
    assert "num_classes" not in config.get("model_args", {})  # transformers' TimmWrapper passes it itself
    assert config["label_names"] == config["imgcls"]["classes"] == ["checker", "stripes_h", "stripes_v"]
    card = (folder / "README.md").read_text()
    assert "stripes_h" in card and 'pipeline("image-classification"' in card and "local-dir:" in card


def test_pipeline_loads_the_folder_offline_and_answers_as_imgcls(hf_summary, timm_run, tiny_data):
    from transformers import pipeline

    paths = expand_image_paths([tiny_data / "val"])
    classify = pipeline("image-classification", model=hf_summary["path"])
    theirs = classify(paths, top_k=3)
    ours = Classifier.load(timm_run).predict(paths, topk=3)
    assert [t[0]["label"] for t in theirs] == [o["label"] for o in ours]
    assert max(abs(t[0]["score"] - o["score"]) for t, o in zip(theirs, ours)) <= 0.02


def test_timm_local_dir_builds_the_same_network(hf_summary, timm_run):
    import timm
    import torch

    model = timm.create_model(f"local-dir:{hf_summary['path']}", pretrained=True).eval()
    reference = Predictor.load(timm_run)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the classifier's weights include the calibration temperature
        torch.testing.assert_close(model(images).softmax(-1), reference.probabilities(images),
                                   atol=1e-5, rtol=0)
    assert model.pretrained_cfg["label_names"] == reference.classes
    assert model.pretrained_cfg["crop_pct"] == reference.preprocess.crop_pct


def test_the_folder_is_a_model_for_predict(hf_summary, timm_run, tiny_data):
    folder = tiny_data / "val" / "checker"
    got = Classifier.load(hf_summary["path"]).predict(folder)
    want = Classifier.load(timm_run).predict(folder)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want)) < 1e-4


def test_scratch_nets_and_foreign_folders_are_refused(tiny_run, tmp_path):
    with pytest.raises(ExportError, match="scratch net"):
        export_model(tiny_run, "hf", out=tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(CheckpointError, match="without imgcls metadata"):
        Predictor.load(foreign)


@pytest.mark.slow
def test_a_transformers_model_exports_its_transformers_folder(tiny_data, tmp_path):
    from transformers import pipeline

    from tests.helpers import save_tiny_vit

    vit = save_tiny_vit(tmp_path / "vit")
    run = Classifier.train(tiny_data, model=f"hf:{vit}", strategy="finetune", epochs=1, batch_size=24, workers=0,
                           out=str(tmp_path / "runs"), name="vit").path
    shutil.rmtree(vit)
    summary = export_model(run, "hf", out=tmp_path / "exported").to_dict()
    assert summary["parity"]["top1_agreement"] >= 0.99 and summary["parity"]["max_abs_diff"] <= 0.02
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["model_type"] == "vit" and config["id2label"] == {"0": "checker", "1": "stripes_h", "2": "stripes_v"}
    paths = expand_image_paths([tiny_data / "val" / "stripes_v"])
    theirs = pipeline("image-classification", model=str(tmp_path / "exported"))(paths, top_k=1)
    ours = Classifier.load(run).predict(paths, topk=1)
    assert [t[0]["label"] for t in theirs] == [o["label"] for o in ours]
