"""POST /explain: the Grad-CAM overlay of an upload as a PNG; exported graphs and bad uploads get 4xx."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from imgcls.inference.predictor import Predictor
from imgcls.serve.app import create_app


def test_explain_answers_a_png_overlay_of_the_upload(tiny_run: Path, tiny_data: Path) -> None:
    image = sorted((tiny_data / "val").rglob("*.png"))[0]
    with TestClient(create_app(Predictor.load(tiny_run)), raise_server_exceptions=False) as client:
        assert client.get("/health").json()["explain"] is True
        response = client.post("/explain", files={"file": ("photo.png", image.read_bytes(), "image/png")})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(response.content)) as overlay:
            assert overlay.mode == "RGB"
        bad = client.post("/explain", files={"file": ("notes.png", b"not an image", "image/png")})
        assert bad.status_code == 415 and "notes.png" in bad.json()["error"]
        assert "/explain" in client.get("/").text or "explain" in client.get("/").text


def test_explain_of_an_exported_graph_is_a_client_error(tiny_run: Path, tiny_data: Path) -> None:
    predictor = Predictor.load(tiny_run)
    predictor.source = tiny_run / "best.onnx"  # what an exported model's predictor names
    image = sorted((tiny_data / "val").rglob("*.png"))[0]
    with TestClient(create_app(predictor), raise_server_exceptions=False) as client:
        assert client.get("/health").json()["explain"] is False
        response = client.post("/explain", files={"file": ("photo.png", image.read_bytes(), "image/png")})
        assert response.status_code == 400 and "PyTorch checkpoint" in response.json()["error"]
