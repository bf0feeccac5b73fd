"""Shared pieces of the browser tests: Debian's Chromium under Playwright, and `assay serve` started as
its own process on a free loopback port (waited for through /v1/health, stopped at the end)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    """Headless Debian Chromium (`apt-get install -y chromium`) driven by Playwright (`pip install playwright`)."""
    pw = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (apt-get install -y chromium)")
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@contextmanager
def launch_more(browser, *args: str):
    """A second Chromium from the ``browser`` fixture's Playwright, with extra command-line ``args``
    (e.g. ``--host-resolver-rules=MAP name 127.0.0.1``); closed at the end."""
    b = browser.browser_type.launch(executable_path=CHROMIUM, args=[*ARGS, *args], headless=True)
    try:
        yield b
    finally:
        b.close()


@contextmanager
def assay_serve(root: Path, *args: str, env: dict[str, str] | None = None, stop_timeout: float = 60) -> Iterator[str]:
    """`assay serve --port P ARGS...` with ``root/serve.log`` as its log; yields its URL once healthy."""
    port = free_port()
    environ = {**os.environ, "ASSAY_HOME": str(root / "home"), **(env or {})}
    environ.pop("ASSAY_MONITOR_DB", None)  # only what the test passes
    log_path = root / "serve.log"
    with log_path.open("w") as log:
        p = subprocess.Popen([sys.executable, "-c", "import sys; from assay.cli import main; sys.argv[0]='assay'; main()",
                              "serve", "--port", str(port), *args], env=environ, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(url + "/v1/health", timeout=2).read()
                    break
                except OSError:
                    assert p.poll() is None and time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.3)
            yield url
        finally:
            p.terminate()
            try:
                p.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                p.kill()
