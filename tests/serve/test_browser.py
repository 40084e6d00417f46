"""The real thing: `imgcls serve` in its own process, its upload page driven by a headless Chromium.

Needs Debian's chromium (.ci/run installs it) and the playwright package (dev extra); skips with
the reason when either is missing. Playwright drives the system browser: no browser download.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow  # a real browser against a live server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(tiny_run: Path):  # noqa: ANN201
    """`python -m imgcls serve RUN` on a free port, default host; yields its base URL."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "imgcls", "serve", str(tiny_run), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if json.load(response)["status"] == "ok":
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"imgcls serve did not come up:\n{process.stdout.read()}")
        time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); the browser test needs one")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    user_data = Path(os.environ.get("TMPDIR", "/tmp")) / f"imgcls-chromium-{os.getpid()}"
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(str(user_data), executable_path=CHROMIUM,
                                                                headless=True, args=CHROMIUM_FLAGS)
        yield context
        context.close()
    shutil.rmtree(user_data, ignore_errors=True)


def _offline(page, url: str) -> list[str]:  # noqa: ANN001
    """Block (and record) every request that leaves the server under test."""
    outside: list[str] = []

    def route(r):  # noqa: ANN001, ANN202
        if r.request.url.startswith(url):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    return outside


def test_upload_page_shows_top_k_bars_for_a_chosen_photo(live_server, browser, tiny_data):
    page = browser.new_page()
    outside = _offline(page, live_server)
    page.goto(live_server + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
    photo = sorted((tiny_data / "val" / "stripes_v").glob("*.png"))[0]
    page.set_input_files("#file", str(photo))
    page.wait_for_selector(".card .row", timeout=30_000)
    page.wait_for_timeout(600)  # the bars grow with a CSS transition
    card = page.locator(".card").first
    assert card.locator("img").get_attribute("src").startswith("blob:")  # the preview
    labels = card.locator(".row .label").all_inner_texts()
    assert sorted(labels) == ["checker", "stripes_h", "stripes_v"]  # top-5 of 3 classes: all, best first
    widths = [b.bounding_box()["width"] for b in card.locator(".row .bar").all()]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert card.locator(".top").inner_text() == labels[0]
    assert outside == []
    page.close()


def test_upload_page_shows_the_servers_error_for_a_non_image(live_server, browser, tmp_path):
    page = browser.new_page()
    page.goto(live_server + "/")
    notes = tmp_path / "notes.png"
    notes.write_text("not really a picture")
    page.set_input_files("#file", str(notes))
    error = page.wait_for_selector(".card .error", timeout=30_000)
    assert "not a readable image" in error.inner_text()
    page.close()


def test_docs_page_works_offline(live_server, browser):
    page = browser.new_page()
    outside = _offline(page, live_server)
    page.goto(live_server + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)  # Swagger UI rendered the operations
    assert "/predict" in page.content()
    assert outside == []
    page.close()
