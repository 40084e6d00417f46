"""Server throughput and latency under a bounded load: 8 concurrent clients, 300 requests, on loopback.

    python benchmarks/serve_load.py [--model RUN_OR_FILE] [--clients 8] [--requests 300]

Starts the real ``imgcls serve`` twice -- with micro-batching (the default) and with
``--max-batch 1`` (each request its own forward pass, the baseline) -- and sends the same mix of
requests to each: val photos, plus every tenth request a bad upload (not an image, empty, too
large) that must get a 4xx. Afterwards /health must answer. Without --model a one-epoch
efficientnet_lite0 run is trained on examples/ants_bees and exported to ONNX first.
Figures on a shared machine are noisy: compare the rows of one run, not runs with each other.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from imgcls import Classifier
from imgcls.inference.predictor import expand_image_paths

REPO = Path(__file__).resolve().parents[1]
MAX_UPLOAD_MB = 2


def bad_uploads() -> list[tuple[str, bytes, int]]:
    """(name, content, expected status) of the uploads a server must refuse without falling over."""
    return [("notes.jpg", b"this is not a picture", 415), ("empty.png", b"", 400),
            ("huge.jpg", os.urandom(MAX_UPLOAD_MB * 2**20 + 1), 413)]


def start_server(model: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "imgcls", "serve", str(model), "--port", str(port),
                                "--max-upload-mb", str(MAX_UPLOAD_MB), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"imgcls serve {model} did not start")


def load(url: str, photos: list[Path], clients: int, requests: int) -> dict:
    bad = bad_uploads()
    plan = [bad[(i // 10) % len(bad)] if i % 10 == 9 else photos[i % len(photos)] for i in range(requests)]

    def send(item, client: httpx.Client) -> tuple[float, int, int]:  # noqa: ANN001
        name, content, expected = (item.name, item.read_bytes(), 200) if isinstance(item, Path) else item
        start = time.perf_counter()
        response = client.post(f"{url}/predict", files={"file": (name, content)})
        ok = "error" in response.json() if expected != 200 else "label" in response.json()
        return time.perf_counter() - start, response.status_code, expected if ok else -1

    def worker(shard: list) -> list[tuple[float, int, int]]:  # noqa: ANN001
        with httpx.Client(timeout=120) as client:
            return [send(item, client) for item in shard]

    before = httpx.get(f"{url}/health", timeout=10).json()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for shard in pool.map(worker, [plan[i::clients] for i in range(clients)]) for r in shard]
    wall = time.perf_counter() - start
    latencies = sorted(seconds for seconds, status, _ in results if status == 200)
    health = httpx.get(f"{url}/health", timeout=10).json()
    return {"wall": wall, "answered": len(results), "right_status": sum(s == e for _, s, e in results),
            "bad_4xx": sum(400 <= s < 500 for _, s, e in results if e != 200),
            "bad": sum(e != 200 for _, _, e in results),
            "p50": statistics.median(latencies) * 1000, "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
            "rps": len(results) / wall, "healthy": health["status"] == "ok",
            "mean_batch": (health["images_predicted"] - before["images_predicted"])
            / max(1, health["batches"] - before["batches"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="run directory, .pt, .onnx or .ts (default: see above)")
    parser.add_argument("--images", type=Path, default=REPO / "examples" / "ants_bees" / "val")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    model = args.model
    if model is None:
        work = Path(tempfile.mkdtemp(prefix="imgcls-bench-"))
        run = Classifier.train(REPO / "examples" / "ants_bees", strategy="feature-extraction", epochs=1, out=work,
                               name="bench")
        model = Path(run.export("onnx")["path"])
    photos = [Path(p) for p in expand_image_paths([args.images])]
    print(f"model {model}, {args.clients} clients, {args.requests} requests ({args.requests // 10} bad uploads), "
          f"{len(photos)} photos from {args.images}")
    print(f"\n{'server':24} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>11} {'right status':>13} "
          f"{'bad->4xx':>9} {'healthy after':>14}")
    for name, extra in [("--max-batch 1 (baseline)", ["--max-batch", "1"]), ("batched (default)", [])]:
        process, url = start_server(model, extra)
        try:
            load(url, photos[:16], args.clients, 3 * args.clients)  # warm-up
            r = load(url, photos, args.clients, args.requests)
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(timeout=30)
        print(f"{name:24} {r['rps']:7.1f} {r['p50']:8.0f} {r['p99']:8.0f} {r['mean_batch']:11.1f} "
              f"{r['right_status']:>6}/{r['answered']:<6} {r['bad_4xx']:>4}/{r['bad']:<4} "
              f"{'yes' if r['healthy'] and alive else 'NO':>14}")


if __name__ == "__main__":
    main()
