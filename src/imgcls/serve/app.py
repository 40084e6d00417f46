"""The HTTP API (docs/output.md): ``GET /health``, ``POST /predict``, ``GET /`` and ``GET /docs``.

Every error answer is JSON ``{"error": ...}`` with a 4xx status for the client's mistakes (not an
image, empty, too large, missing field) and 500 for bugs; no request can stop the server. Uploads
are decoded in the thread pool, several at once; the forward passes go through one
:class:`MicroBatcher`, so concurrent clients share batches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files as package_files
from typing import Any, Optional

import numpy as np
import torch
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgcls.data.images import ImageLoadError, load_image
from imgcls.data.presets import UInt8EvalPreset, normalize_batch
from imgcls.errors import ImgclsError
from imgcls.inference.predictor import Predictor
from imgcls.runtime import usable_cpus
from imgcls.serve.batching import MicroBatcher
from imgcls.version import __version__

log = logging.getLogger(__name__)


GPU_WAIT_MS = 5.0  # how long a GPU's forward pass waits for more requests by default


@dataclass(frozen=True)
class ServeLimits:
    max_upload_mb: float = 10.0  # per image
    max_files: int = 64  # per request
    max_batch: int = 32  # images per forward pass
    max_wait_ms: float | None = None  # how long a forward pass waits for more requests to join (None: see below)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class UploadError(Exception):
    """A bad upload: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(ImgclsError)
    async def user_error(_: Request, exc: ImgclsError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error while answering a request")
        return _error(500, f"internal error ({type(exc).__name__}); the server keeps running")


class RefuseHugeBodies:
    """A request whose declared size is over what ``limits`` allow gets a 413 before a byte of its body is read
    (the per-file limits apply after). Plain ASGI: Starlette's ``@app.middleware("http")`` runs each request and
    its response through an extra task and memory stream, a fifth of the event loop's work per upload."""

    def __init__(self, app: Any, limits: ServeLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"")
            limits = self.limits
            if length.isdigit() and int(length) > limits.max_upload_bytes * limits.max_files + 65536:
                response = _error(413, f"request of {int(length) / 2**20:.1f} MB is too large "
                                       f"({limits.max_files} images of at most {limits.max_upload_mb:g} MB)")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _crop(crop: UInt8EvalPreset, predictor: Predictor, name: str, data: bytes) -> torch.Tensor:
    """The upload decoded and centre-cropped, still uint8: the batch is normalised in one pass, in place
    (per image, the float conversion and normalisation took about as long as the resize)."""
    try:
        image = load_image(data, predictor.preprocess.resize_size)
    except ImageLoadError as exc:
        raise UploadError(415, f"{name}: not a readable image ({exc.detail})") from None
    return crop(image)


async def _read_upload(upload: UploadFile, limits: ServeLimits) -> bytes:
    name = upload.filename or "upload"
    if upload.size is not None and upload.size > limits.max_upload_bytes:
        raise UploadError(413, f"{name} is {upload.size / 2**20:.1f} MB; the limit is {limits.max_upload_mb:g} MB "
                               f"per image (imgcls serve --max-upload-mb)")
    data = await upload.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise UploadError(413, f"{name} is larger than the {limits.max_upload_mb:g} MB limit per image "
                               f"(imgcls serve --max-upload-mb)")
    if not data:
        raise UploadError(400, f"{name} is empty")
    return data


def _page() -> str:
    return (package_files("imgcls.serve") / "static" / "index.html").read_text(encoding="utf-8")


def _probabilities_and_scores(predictor: Predictor, batch: torch.Tensor,
                              forward: Callable[[torch.Tensor], Any] | None = None) -> np.ndarray:
    """One row per image of a uint8 batch: the class probabilities, then the OOD score (NaN for models
    without one), so the batcher hands each request its rows as one array."""
    probs, scores = predictor.outputs(normalize_batch(batch, predictor.preprocess), forward)
    column = torch.full((len(probs), 1), float("nan")) if scores is None else scores.reshape(-1, 1).float()
    return torch.cat([probs.float(), column], dim=1).numpy()


def create_app(predictor: Predictor, limits: ServeLimits | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor``; the batcher starts and stops with the app."""
    limits = limits or ServeLimits()
    # On a CPU, one single-threaded forward pass per core (as predict does for folders): with 8 clients on
    # full-size photos and 2 cores, 61-63 req/s against 57-60 for one forward thread whose two-thread
    # operators waited on the core decoding the next uploads.
    per_core = predictor.backend.per_core()
    parallel = usable_cpus() if per_core is not None else 1
    wait = limits.max_wait_ms
    if wait is None:
        # A CPU's per-image cost is the same in a batch, so a free core waiting for company only idles. 8 clients,
        # full-size photos, 2 cores (benchmarks/serve_load.py): waiting 5 ms 54.6 req/s (p99 246 ms), no batches
        # 55.6-61.4 (p99 180-188), no wait 60.3-62.5 (p99 222-243): what queues while the cores are busy still
        # shares a forward pass. A GPU's batch costs little more than one image: there it pays to wait.
        wait = 0.0 if per_core is not None else GPU_WAIT_MS
    batcher = MicroBatcher(lambda batch: _probabilities_and_scores(predictor, batch, per_core), limits.max_batch,
                           wait, parallel=parallel)
    crop = UInt8EvalPreset(predictor.preprocess)
    page = _page()
    explainer: list[Any] = []  # built on the first /explain request: most servers never get one
    explain_lock = threading.Lock()  # Grad-CAM keeps one request's activations on the explainer

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threads = torch.get_num_threads()
        if parallel > 1:
            torch.set_num_threads(1)  # each upload's resize and normalise, and each forward, on one core
        await batcher.start()
        yield
        await batcher.stop()
        torch.set_num_threads(threads)

    app = FastAPIOffline(title="imgcls", version=__version__, lifespan=lifespan, redoc_url=None,
                         description=f"Image classifier {predictor.source.name}: "
                                     f"{len(predictor.classes)} classes ({', '.join(predictor.classes[:10])}"
                                     f"{', ...' if len(predictor.classes) > 10 else ''}).")
    _add_error_handlers(app)

    app.add_middleware(RefuseHugeBodies, limits=limits)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def upload_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", summary="Is the model loaded and answering?")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": str(predictor.source), "backend": predictor.backend.name,
                "classes": predictor.classes, "img_size": predictor.preprocess.img_size,
                "ood_threshold": predictor.threshold, "reject_rate": predictor.reject_rate if predictor.threshold
                is not None else None,
                "max_upload_mb": limits.max_upload_mb, "max_files": limits.max_files,
                "images_predicted": batcher.images, "batches": batcher.batches,
                "explain": predictor.source.suffix.lower() in (".pt", ".pth", ".ckpt")}

    @app.post("/predict", summary="Classify one image (field `file`) or several (field `files`)")
    async def predict(file: Optional[UploadFile] = File(None, description="One image: answered with one object"),
                      files: Optional[list[UploadFile]] = File(None, description="Several images: answered "
                                                                                 "with a list"),
                      topk: int = Query(5, ge=1, le=1000, description="Classes to list per image")) -> Any:
        uploads = ([file] if file is not None else []) + list(files or [])
        if not uploads:
            raise UploadError(400, "no image in the request: send multipart form field 'file' (one image) "
                                   "or 'files' (several)")
        if len(uploads) > limits.max_files:
            raise UploadError(413, f"{len(uploads)} images in one request; the limit is {limits.max_files}")
        contents = [await _read_upload(upload, limits) for upload in uploads]
        images = await asyncio.gather(*(run_in_threadpool(_crop, crop, predictor, upload.filename or "upload", data)
                                        for upload, data in zip(uploads, contents)))
        rows = await batcher.predict(images)
        results = [predictor.labelled(upload.filename or "upload", row[:-1], topk,
                                      None if np.isnan(row[-1]) else float(row[-1])).to_dict()
                   for upload, row in zip(uploads, rows)]
        return results[0] if file is not None and not files else results

    @app.post("/explain", summary="Where the model looked: a Grad-CAM overlay (PNG) of one image (field `file`)",
              response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def explain(file: UploadFile = File(..., description="One image")) -> Response:
        data = await _read_upload(file, limits)
        name = file.filename or "upload"
        try:
            image = await run_in_threadpool(load_image, data, predictor.preprocess.resize_size)
        except ImageLoadError as exc:
            raise UploadError(415, f"{name}: not a readable image ({exc.detail})") from None
        png = await run_in_threadpool(_explain_png, explainer, explain_lock, predictor, image, name)
        return Response(png, media_type="image/png")

    return app


def _explain_png(explainer: list[Any], lock: threading.Lock, predictor: Predictor, image: Any, name: str) -> bytes:
    """The overlay of one image; the Explainer (a second copy of the network) is made once, on first use."""
    from imgcls.inference.explain import explainer_for

    with lock:
        if not explainer:
            explainer.append(explainer_for(predictor.source))  # an exported graph: ImgclsError, answered 400
        return explainer[0].explain_images([image], [name])[0].png()
