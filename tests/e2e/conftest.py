from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def _skip_or_fail(reason: str):
    if os.environ.get("PIPELINE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (PIPELINE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    env: dict
    outbox: Path
    public: Path
    database_url: str

    def pipeline(self, *args: str) -> subprocess.CompletedProcess:
        """Run a ``pipeline`` command against the same settings as the server."""
        return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)


def build_public(srv: Server) -> None:
    """The feeds, article pages and index that the feeds stage writes, so every page of the journey exists."""
    from pipeline.content.loader import load_library
    from pipeline.feeds import build_site

    library, _ = load_library(ROOT / "content")
    build_site(library, at=datetime(2026, 12, 10, 12, tzinfo=UTC), public_dir=srv.public, site_url=srv.url,
               templates_dir=ROOT / "templates", workers=1)


def new_server(tmp_path, port: int, **settings: str) -> Server:
    """A Server for ``pipeline serve`` on ``port`` with its own SQLite database, outbox and public/ under
    ``tmp_path``; ``settings``: more PIPELINE_* variables."""
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    db = f"sqlite:///{tmp_path}/pipeline.db"
    env.update({
        "PIPELINE_DATABASE_URL": db, "PIPELINE_OUTBOX": str(tmp_path / "outbox"),
        "PIPELINE_PUBLIC_DIR": str(tmp_path / "public"), "PIPELINE_VAR_DIR": str(tmp_path / "var"),
        "PIPELINE_SITE_URL": url, "PIPELINE_SECRET_KEY": "e2e-secret-" + "z" * 40,
        "PIPELINE_DELIVERY": "file", "PYTHONPATH": str(ROOT), **settings,
    })
    return Server(url=url, env=env, outbox=tmp_path / "outbox", public=tmp_path / "public", database_url=db)


@pytest.fixture
def server(tmp_path):
    """``pipeline serve`` in a subprocess on a free loopback port, with its own SQLite database and outbox."""
    port = free_port()
    srv = new_server(tmp_path, port)
    build_public(srv)
    env = srv.env
    with serving(env, port, tmp_path / "server.log"):
        yield srv


@contextmanager
def serving(env: dict, port: int, log_path):
    """``pipeline serve`` on ``port`` until the block ends; fails the test, with its log, if it does not come up."""
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the server did not start:\n" + log_path.read_text())
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} is missing; install Debian's chromium")
    if not AXE.exists():
        _skip_or_fail("node_modules/axe-core is missing; run `npm install` at the repository root")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    # bypass_csp only so that the test can inject axe-core; the app's own pages never need inline script.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1024, "height": 800})
    p = context.new_page()
    p.set_default_timeout(15000)
    yield p
    context.close()
