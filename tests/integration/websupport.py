"""Helpers for the web tests: an app on a real database, driven over httpx.ASGITransport (no socket)."""

from __future__ import annotations

import email
import email.policy
import html
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import BlockingPortal
from sqlalchemy import select

from pipeline.context import Context
from pipeline.settings import load_settings
from pipeline.store import tables

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-secret-key-" + "x" * 32
T0 = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def require_services() -> bool:
    return os.environ.get("PIPELINE_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str):
    if require_services():
        pytest.fail(f"{reason} (PIPELINE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


class Clock:
    def __init__(self, at: datetime = T0):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kwargs) -> datetime:
        self.at += timedelta(**kwargs)
        return self.at


def make_settings(tmp: Path, database_url: str, **overrides):
    values = {"database_url": database_url, "outbox": tmp / "outbox", "public_dir": tmp / "public",
              "secret_key": SECRET, "templates_dir": ROOT / "templates", "content_dir": ROOT / "content",
              "schedules": ROOT / "schedules.yaml", "var_dir": tmp / "var", "site_url": "http://testserver"}
    values.update(overrides)
    return load_settings(values, environ={}, dotenv=None)


def parse_eml(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def bodies(msg) -> tuple[str, str]:
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return plain, html


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


@dataclass
class Site:
    """A running app plus what a test needs to look inside it."""

    settings: object
    ctx: Context
    app: object
    clock: Clock
    portal: BlockingPortal
    clients: dict = field(default_factory=dict)

    @property
    def engine(self):
        return self.ctx.engine

    @property
    def signer(self):
        return self.app.state.web.signer

    def client(self, ip: str = "192.0.2.10") -> httpx.AsyncClient:
        if ip not in self.clients:
            transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
            self.clients[ip] = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return self.clients[ip]

    def request(self, method: str, url: str, *, ip: str = "192.0.2.10", **kwargs) -> httpx.Response:
        response = self.portal.call(lambda: self.client(ip).request(method, url, **kwargs))
        response.page = html.unescape(response.text)  # the words a reader sees (Jinja escapes apostrophes)
        return response

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def form_post(self, page_url: str, action: str, data: dict, *, ip: str = "192.0.2.10") -> httpx.Response:
        """Like a person: open the page (for the CSRF cookie and field), then submit."""
        page = self.get(page_url, ip=ip)
        assert page.status_code == 200, page.text
        return self.post(action, data={"csrf_token": csrf_of(page.text), **data}, ip=ip)

    def signup(self, address: str, *, topics=("clinical-trials", "palliative-care"), cadence="weekly",
               ip: str = "192.0.2.10", **extra) -> httpx.Response:
        data = {"email": address, "name": "", "topics": list(topics), "cadence": cadence,
                "timezone": "America/Chicago", **extra}
        return self.form_post("/subscribe", "/subscribe", data, ip=ip)

    def deliver(self):
        """What the outbox sender in `pipeline run` does: send every queued email that is due, at the site's clock."""
        from pipeline.delivery.outbox_sender import OutboxSender

        return OutboxSender(self.engine, self.settings, clock=self.clock).run_once()

    def outbox(self) -> list:
        """The emails sent so far: the queue is delivered first, as the sender in `pipeline run` would."""
        self.deliver()
        folder = Path(self.settings.outbox)
        if not folder.is_dir():
            return []
        return [parse_eml(p) for p in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)]

    def clear_outbox(self) -> None:
        for p in Path(self.settings.outbox).glob("*.eml"):
            p.unlink()

    def snapshot(self) -> dict:
        with self.engine.connect() as conn:
            return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                    for t in tables.metadata.sorted_tables}

    def subscriber(self, address: str):
        with self.engine.connect() as conn:
            return conn.execute(select(tables.subscribers)
                                .where(tables.subscribers.c.email_key == address.lower())).first()

    def suppression(self, address: str):
        with self.engine.connect() as conn:
            return conn.execute(select(tables.suppressions)
                                .where(tables.suppressions.c.email_key == address.lower())).first()

    def link_in(self, msg, path_prefix: str) -> str:
        plain, html = bodies(msg)
        match = re.search(re.escape("http://testserver" + path_prefix) + r"[A-Za-z0-9._\-]+", plain)
        assert match, f"no {path_prefix} link in the message"
        assert match.group(0) in html
        return match.group(0).removeprefix("http://testserver")

    def confirmed(self, address: str) -> str:
        """Sign up and confirm; returns the token-free address of the preferences page from the welcome email."""
        self.clear_outbox()
        assert self.signup(address).status_code == 200
        confirm = self.link_in(self.outbox()[-1], "/confirm/")
        assert self.form_post(confirm, confirm, {}).status_code == 200
        return self.link_in(self.outbox()[-1], "/preferences/")


class HTMLShape(HTMLParser):
    """Collects what the accessibility and CSP checks look at."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.labels_for: set[str] = set()
        self.inputs: list[dict] = []
        self.inline_scripts = 0
        self.style_attrs = 0
        self.html_lang = None
        self.described_by: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if "style" in a:
            self.style_attrs += 1
        if tag == "html":
            self.html_lang = a.get("lang")
        if tag == "label" and a.get("for"):
            self.labels_for.add(a["for"])
        if tag in ("input", "select", "textarea"):
            self.inputs.append(a)
        if tag == "script" and not a.get("src"):
            self.inline_scripts += 1
        if a.get("aria-describedby"):
            self.described_by.extend(a["aria-describedby"].split())


def shape(html: str) -> HTMLShape:
    parser = HTMLShape()
    parser.feed(html)
    return parser
