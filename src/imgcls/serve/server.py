"""``imgcls serve``: the app under uvicorn, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

from imgcls.errors import ConfigError
from imgcls.inference.predictor import Predictor
from imgcls.serve.app import ServeLimits, create_app

log = logging.getLogger(__name__)


def check_port(host: str, port: int) -> None:
    """A clear error now rather than uvicorn's log line after the model has loaded."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port number (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConfigError(f"--host {host!r} is not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be opened ({exc.strerror})"
            raise ConfigError(f"port {port} on {host} {reason}; choose another with --port") from None


def run_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
               **limits: Any) -> None:
    """Serve ``predictor`` until Ctrl-C."""
    import uvicorn

    check_port(host, port)
    app = create_app(predictor, ServeLimits(**limits))
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %s (%s, %d classes) at http://%s:%d  -- upload page /, API docs /docs, Ctrl-C stops",
             predictor.source, predictor.backend.name, len(predictor.classes), shown, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: other machines can reach this server (it has no authentication)", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
