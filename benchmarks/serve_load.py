"""Server throughput and latency under a bounded load: 8 concurrent clients, 1200 requests, on loopback.

    python benchmarks/serve_load.py [--run RUN] [--images DIR] [--clients 8] [--requests 1200]

Three servers of the same model get the same mix of requests -- full-size val photos (the ants/bees
originals from ../shared when present, else the bundled copies), plus every tenth request a bad upload
(not an image, empty, too large) that must get a 4xx; afterwards /health must answer:
- the seeds' per-request recipe (the baseline): FastAPI, and per request PIL -> torchvision transforms ->
  one forward pass of the PyTorch model (``--seed-server``, below);
- ``imgcls serve RUN/best.onnx --max-batch 1``: each request its own forward pass;
- ``imgcls serve RUN/best.onnx``: micro-batching (the default).
Without --run a one-epoch efficientnet_lite0 run is trained on examples/ants_bees first; its ONNX export is
made when missing. Figures on a shared machine are noisy: compare the rows of one run, not runs with each other.
1200 requests by default: at 100 req/s, 300 (the earlier default) measured a 3-second window, too short to
tell servers 10% apart; the recipe, whose first requests are its slowest, also gets its steady rate.
The client's own CPU per request is printed: it runs on the cores the server under test needs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi import FastAPI, File, HTTPException, UploadFile

from imgcls import Classifier
from imgcls.inference.predictor import expand_image_paths

REPO = Path(__file__).resolve().parents[1]
FULL_SIZE_VAL = REPO.parent / "shared" / "datasets" / "hymenoptera_data" / "val"
MAX_UPLOAD_MB = 8


def seed_server(run: Path, port: int) -> None:
    """The seeds' recipe: a FastAPI endpoint that decodes, transforms and classifies each upload on its own."""
    import io

    import torch
    import uvicorn
    from PIL import Image
    from torchvision import transforms

    from imgcls.models.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(run / "best.pt")
    model, pre, classes = checkpoint.build().eval(), checkpoint.preprocess, checkpoint.classes
    transform = transforms.Compose([transforms.Resize(pre.resize_size), transforms.CenterCrop(pre.img_size),
                                    transforms.ToTensor(), transforms.Normalize(pre.mean, pre.std)])
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "images_predicted": 0, "batches": 0}

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> dict:  # noqa: B008 - FastAPI's idiom
        try:
            image = Image.open(io.BytesIO(file.file.read())).convert("RGB")
        except Exception as exc:  # noqa: BLE001 - the tutorial answers any bad upload with a 4xx
            raise HTTPException(415, str(exc)) from None
        with torch.no_grad():
            probs = torch.softmax(model(transform(image).unsqueeze(0)), dim=1)[0]
        return {"label": classes[int(probs.argmax())], "probability": float(probs.max())}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def bad_uploads() -> list[tuple[str, bytes, int]]:
    """(name, content, expected status) of the uploads a server must refuse without falling over."""
    return [("notes.jpg", b"this is not a picture", 415), ("empty.png", b"", 400),
            ("huge.jpg", os.urandom(MAX_UPLOAD_MB * 2**20 + 1), 413)]


def start_server(command: list[str]) -> tuple[subprocess.Popen, str]:
    """``command`` + ``--port N`` in a subprocess, once its /health answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{' '.join(command)} did not start")


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    """(body, content type) of a form upload of ``content`` as the field "file", as a browser sends it."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def load(url: str, photos: list[Path], clients: int, requests: int) -> dict:
    """``requests`` uploads from ``clients`` threads, each on its own keep-alive connection.

    The client shares the machine's cores with the server it measures, so it sends request bodies
    encoded once beforehand over the standard library's http.client: 0.4-0.6 ms of CPU per request
    against 1.5-1.9 ms for httpx building each multipart body anew (2 cores), time otherwise taken
    from the server under test, and more from a fast server than from a slow one."""
    bad = bad_uploads()
    items = [bad[(i // 10) % len(bad)] if i % 10 == 9 else photos[i % len(photos)] for i in range(requests)]
    encoded: dict = {}
    for item in items:
        if id(item) not in encoded:
            name, content, expected = (item.name, item.read_bytes(), 200) if isinstance(item, Path) else item
            encoded[id(item)] = (*multipart(name, content), expected)
    plan = [encoded[id(item)] for item in items]
    host, port = url.removeprefix("http://").split(":")

    def send(connection: http.client.HTTPConnection, body: bytes, content_type: str) -> tuple[int, bytes]:
        connection.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()

    def worker(shard: list) -> list[tuple[float, int, int]]:  # noqa: ANN001
        connection, results = http.client.HTTPConnection(host, int(port), timeout=120), []
        for body, content_type, expected in shard:
            start = time.perf_counter()
            for _ in range(2):  # the server may have closed the connection: once more on a new one
                try:
                    status, data = send(connection, body, content_type)
                    break
                except (ConnectionError, http.client.HTTPException):
                    connection.close()
                    connection = http.client.HTTPConnection(host, int(port), timeout=120)
            else:
                status, data = 0, b"{}"
            try:
                answered = json.loads(data)
            except ValueError:
                answered = {}
            ok = status == expected and (expected == 200) == ("label" in answered)
            results.append((time.perf_counter() - start, status, expected if ok else -1))
        connection.close()
        return results

    before = httpx.get(f"{url}/health", timeout=10).json()
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for shard in pool.map(worker, [plan[i::clients] for i in range(clients)]) for r in shard]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    latencies = sorted(seconds for seconds, status, _ in results if status == 200)
    health = httpx.get(f"{url}/health", timeout=10).json()
    return {"wall": wall, "answered": len(results), "right_status": sum(s == e for _, s, e in results),
            "bad_4xx": sum(400 <= s < 500 for _, s, e in results if e != 200),
            "bad": sum(e != 200 for _, _, e in results),
            "p50": statistics.median(latencies) * 1000, "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
            "rps": len(results) / wall, "client_ms": cpu / len(results) * 1000, "healthy": health["status"] == "ok",
            "mean_batch": (health["images_predicted"] - before["images_predicted"])
            / max(1, health["batches"] - before["batches"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run directory (default: see above)")
    parser.add_argument("--images", type=Path,
                        default=FULL_SIZE_VAL if FULL_SIZE_VAL.is_dir() else REPO / "examples" / "ants_bees" / "val")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--seed-server", type=Path, help=argparse.SUPPRESS)  # RUN: serve the baseline
    parser.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_server:
        seed_server(args.seed_server, args.port)
        return

    run = args.run
    if run is None:
        work = Path(tempfile.mkdtemp(prefix="imgcls-bench-"))
        run = Classifier.train(REPO / "examples" / "ants_bees", model="efficientnet_lite0",
                               strategy="feature-extraction", epochs=1, out=work, name="bench").path
    onnx = run / "best.onnx"
    if not onnx.is_file():
        onnx = Path(Classifier.load(run).export("onnx")["path"])
    photos = [Path(p) for p in expand_image_paths([args.images])]
    print(f"run {run}, {args.clients} clients, {args.requests} requests ({args.requests // 10} bad uploads), "
          f"{len(photos)} photos from {args.images}")
    print(f"\n{'server':34} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>11} {'right status':>13} "
          f"{'bad->4xx':>9} {'healthy after':>14} {'client CPU ms/req':>18} {'vs baseline':>12}")
    imgcls = [sys.executable, "-m", "imgcls", "serve", str(onnx), "--max-upload-mb", str(MAX_UPLOAD_MB)]
    servers = [("seeds' per-request recipe", [sys.executable, __file__, "--seed-server", str(run)]),
               ("imgcls serve --max-batch 1", [*imgcls, "--max-batch", "1"]),
               ("imgcls serve (default)", imgcls)]
    baseline = None
    for name, command in servers:
        process, url = start_server(command)
        try:
            load(url, photos[:16], args.clients, 3 * args.clients)  # warm-up
            r = load(url, photos, args.clients, args.requests)
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(timeout=30)
        baseline = baseline or r
        print(f"{name:34} {r['rps']:7.1f} {r['p50']:8.0f} {r['p99']:8.0f} {r['mean_batch']:11.1f} "
              f"{r['right_status']:>6}/{r['answered']:<6} {r['bad_4xx']:>4}/{r['bad']:<4} "
              f"{'yes' if r['healthy'] and alive else 'NO':>14} {r['client_ms']:18.2f} "
              f"{r['rps'] / baseline['rps']:11.2f}x", flush=True)


if __name__ == "__main__":
    main()
