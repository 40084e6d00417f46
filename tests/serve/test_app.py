"""The HTTP API: predict JSON for one file or a list, JSON errors with 4xx for bad uploads, never a dead server."""

from __future__ import annotations

import io
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgcls.errors import ConfigError
from imgcls.inference.predictor import Predictor
from imgcls.serve.app import ServeLimits, create_app
from imgcls.serve.server import check_port

LIMIT_MB = 0.05


@pytest.fixture(scope="module")
def predictor(tiny_run: Path) -> Predictor:
    return Predictor.load(tiny_run)


@pytest.fixture(scope="module")
def client(predictor: Predictor):  # noqa: ANN201
    app = create_app(predictor, ServeLimits(max_upload_mb=LIMIT_MB, max_files=4, max_batch=8, max_wait_ms=20))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _png(path: Path) -> bytes:
    return path.read_bytes()


@pytest.fixture(scope="module")
def val_images(tiny_data: Path) -> list[Path]:
    return sorted((tiny_data / "val").rglob("*.png"))


def test_health_names_the_model_and_its_classes(client, predictor):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["classes"] == predictor.classes
    assert health["backend"] == "torch"


def test_one_file_gets_the_same_answer_as_imgcls_predict(client, predictor, val_images):
    image = val_images[0]
    response = client.post("/predict?topk=2", files={"file": ("photo.png", _png(image), "image/png")})
    assert response.status_code == 200
    body = response.json()
    expected = predictor.predict(image, topk=2)[0]
    assert body["path"] == "photo.png" and body["label"] == expected.label
    assert body["score"] == pytest.approx(expected.score, abs=1e-5)
    assert [t["label"] for t in body["topk"]] == [t["label"] for t in expected.topk]


def test_several_files_get_a_list_in_order(client, predictor, val_images):
    picked = [val_images[0], val_images[-1]]
    response = client.post("/predict", files=[("files", (p.name, _png(p), "image/png")) for p in picked])
    assert response.status_code == 200
    body = response.json()
    assert [b["path"] for b in body] == [p.name for p in picked]
    assert [b["label"] for b in body] == [r.label for r in predictor.predict(picked)]


def _too_large_png() -> bytes:
    noise = Image.effect_noise((256, 256), 100).convert("RGB")  # noise does not compress
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > LIMIT_MB * 2**20
    return buffer.getvalue()


@pytest.mark.parametrize("files, data, status, words", [
    ({"file": ("notes.txt", b"just some text", "text/plain")}, None, 415, "not a readable image"),
    ({"file": ("empty.jpg", b"", "image/jpeg")}, None, 400, "empty"),
    ({"file": ("half.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image/png")}, None, 415, "half.png"),
    ({"picture": ("a.png", b"x", "image/png")}, None, 400, "'file'"),
    (None, {"file": "not a file"}, 422, "file"),
    ("huge", None, 413, "limit"),
    ("many", None, 413, "limit is 4"),
])
def test_bad_uploads_get_4xx_json_errors_and_the_server_stays_healthy(client, val_images, files, data, status,
                                                                        words):
    if files == "huge":
        files = {"file": ("big.png", _too_large_png(), "image/png")}
    elif files == "many":
        files = [("files", (f"{i}.png", _png(val_images[0]), "image/png")) for i in range(5)]
    response = client.post("/predict", files=files, data=data)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert client.get("/health").status_code == 200


def test_a_body_that_is_not_multipart_is_a_json_4xx(client):
    response = client.post("/predict", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= response.status_code < 500 and "error" in response.json()
    response = client.post("/predict", json={"file": "x"})
    assert 400 <= response.status_code < 500 and "error" in response.json()


def test_concurrent_clients_are_batched_together(client, val_images):
    before = client.get("/health").json()
    payload = _png(val_images[0])

    def one(_: int) -> int:
        return client.post("/predict", files={"file": ("a.png", payload, "image/png")}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(24)))
    after = client.get("/health").json()
    assert statuses == [200] * 24
    assert after["images_predicted"] - before["images_predicted"] == 24
    assert after["batches"] - before["batches"] < 24  # some requests shared a forward pass


def test_upload_page_and_offline_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "predict" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained
    docs = client.get("/docs").text
    assert "cdn." not in docs
    script = docs.split('<script src="', 1)[1].split('"', 1)[0]
    assert client.get(script).status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_a_port_in_use_is_a_user_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port}.*--port"):
            check_port("127.0.0.1", port)


def test_a_request_declared_larger_than_the_limits_allow_is_refused_before_its_body_is_parsed(client):
    body = b"x" * (int(LIMIT_MB * 2**20) * 4 + 70_000)  # over 4 files of LIMIT_MB: not even multipart
    response = client.post("/predict", content=body, headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413 and "too large" in response.json()["error"]
    assert client.get("/health").status_code == 200
