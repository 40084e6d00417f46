"""Hugging Face transformers models (``--model hf:DIR``): built offline from a tiny ViT saved in tmp_path,
trained, then evaluated, predicted, exported and served from the run alone (the folder removed)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from imgcls import Classifier  # noqa: E402
from imgcls.errors import ModelError  # noqa: E402
from imgcls.models.checkpoint import load_checkpoint  # noqa: E402
from imgcls.models.factory import build_model, create_model, resolve_arch  # noqa: E402
from imgcls.models.hf import processor_preprocess  # noqa: E402
from tests.helpers import run_main, save_tiny_vit  # noqa: E402


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="module")
def vit_run(vit_dir: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of fine-tuning the tiny ViT; afterwards its folder is gone, as on another machine."""
    folder = tmp_path_factory.mktemp("vit-copy") / "vit"
    shutil.copytree(vit_dir, folder)
    classifier = Classifier.train(tiny_data, model=f"hf:{folder}", strategy="finetune", epochs=1, batch_size=16,
                                  workers=0, out=str(tmp_path_factory.mktemp("hf-runs")), name="vit")
    shutil.rmtree(folder)
    return classifier.path


def test_head_is_resized_and_preprocessing_comes_from_the_processor(vit_dir: Path) -> None:
    created = create_model(f"hf:{vit_dir}", 3)
    model = created.model.eval()
    assert model.get_classifier().out_features == 3 and model.num_features == 32
    assert created.preprocess.img_size == 32 and created.preprocess.interpolation == "bicubic"
    assert created.preprocess.mean == (0.4, 0.5, 0.6) and created.preprocess.std == (0.2, 0.25, 0.3)
    assert created.weights and str(vit_dir) in created.weights
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    assert features.shape == (2, 32)
    torch.testing.assert_close(model.get_classifier()(features), model(x))  # the timm contract feature caches use


def test_pretrained_weights_are_loaded_and_no_pretrained_is_random(vit_dir: Path) -> None:
    from transformers import ViTForImageClassification

    original = ViTForImageClassification.from_pretrained(vit_dir).state_dict()["vit.embeddings.patch_embeddings.projection.weight"]
    loaded = create_model(f"hf:{vit_dir}", 3).model.state_dict()["hf.vit.embeddings.patch_embeddings.projection.weight"]
    fresh = create_model(f"hf:{vit_dir}", 3, pretrained=False)
    torch.testing.assert_close(loaded, original)
    assert fresh.weights is None
    assert not torch.equal(fresh.model.state_dict()["hf.vit.embeddings.patch_embeddings.projection.weight"], original)


def test_spec_is_plain_data_and_rebuilds_the_same_network(vit_dir: Path) -> None:
    created = create_model(f"hf:{vit_dir}", 4, img_size=48)  # another size: position embeddings interpolated
    rebuilt = build_model(created.spec)
    rebuilt.load_state_dict(created.model.state_dict())
    x = torch.randn(1, 3, 48, 48)
    torch.testing.assert_close(rebuilt.eval()(x), created.model.eval()(x))
    assert created.spec.arch == "transformers:vit" and created.preprocess.img_size == 48

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    assert plain(created.spec.to_dict())


def test_processor_with_centre_crop_gives_resize_and_crop() -> None:
    class ConvNextLike:  # the attributes transformers image processors carry
        size = {"shortest_edge": 256}
        crop_size = {"height": 224, "width": 224}
        do_center_crop = True
        do_normalize = True
        image_mean, image_std, resample = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 2

    pre = processor_preprocess(ConvNextLike(), None, None)
    assert pre.img_size == 224 and pre.resize_size == 256 and pre.interpolation == "bilinear"


def test_run_works_without_the_original_folder(vit_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(vit_run / "best.pt")
    assert checkpoint.spec.name.startswith("hf:") and checkpoint.spec.arch == "transformers:vit"
    classifier = Classifier.load(vit_run)
    predictions = classifier.predict(tiny_data / "val" / "checker", topk=2)
    assert len(predictions) == 8 and {p["label"] for p in predictions} <= set(classifier.classes)
    metrics = classifier.evaluate()
    assert 0.0 <= metrics["accuracy"] <= 1.0 and len(metrics["confusion_matrix"]) == 3
    summary = classifier.export("onnx", out=tmp_path / "vit.onnx")
    assert summary["parity"]["max_abs_diff"] < 1e-3 and summary["parity"]["top1_agreement"] == 1.0
    onnx_predictions = Classifier.load(tmp_path / "vit.onnx").predict(tiny_data / "val" / "checker", topk=2)
    assert [p["label"] for p in onnx_predictions] == [p["label"] for p in predictions]


def test_run_is_served(vit_run: Path, tiny_data: Path) -> None:
    from fastapi.testclient import TestClient

    from imgcls.inference.predictor import Predictor
    from imgcls.serve.app import ServeLimits, create_app

    image = next((tiny_data / "val" / "stripes_h").glob("*.png"))
    app = create_app(Predictor.load(vit_run), ServeLimits(max_upload_mb=1, max_files=4, max_batch=4, max_wait_ms=1))
    with TestClient(app) as client:
        response = client.post("/predict", files={"file": (image.name, image.read_bytes(), "image/png")})
    assert response.status_code == 200 and response.json()["label"] in {"checker", "stripes_h", "stripes_v"}


def test_missing_folder_and_offline_hub_name_are_one_line_errors(tmp_path: Path, tiny_data: Path) -> None:
    with pytest.raises(ModelError, match="model folder not found"):
        resolve_arch(f"hf:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_arch(f"hf:{tmp_path / 'empty'}")
    code, _, stderr = run_main("train", str(tiny_data), "--model", "hf:nobody-here/no-such-model", "--epochs", "1",
                               "--out", str(tmp_path))
    assert code == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 3  # the message, maybe a data line
    assert "hf:nobody-here/no-such-model" in stderr and "hf:DIR" in stderr


def test_without_transformers_the_error_names_the_extra(vit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(ModelError, match=r"imgcls\[hf\]"):
        create_model(f"hf:{vit_dir}", 3)
