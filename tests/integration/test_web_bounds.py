"""Hostile request shapes: bodies bounded while they stream (chunked too), JSON depth bounded, no 500 from shape."""

from __future__ import annotations

import json

import pytest
from websupport import csrf_of

from pipeline.web.limits import FORM_MAX_BODY, WEBHOOK_MAX_BODY


class Stream:
    """A chunked request body of ``total`` bytes, produced lazily; ``sent`` counts what the app pulled."""

    def __init__(self, total: int, chunk: bytes):
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self):
        while self.sent < self.total:
            self.sent += len(self.chunk)
            yield self.chunk


def test_a_chunked_sign_up_of_55_mb_is_refused_while_it_streams_and_stores_nothing(site):
    page = site.get("/subscribe")
    prefix = f"csrf_token={csrf_of(page.text)}&email=big%40example.org&topics=clinical-trials&name=".encode()
    body = Stream(55 * 1024 * 1024, b"a" * 16384)

    async def chunks():
        yield prefix
        async for c in body:
            yield c

    r = site.post("/subscribe", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "That was too much to send" in r.page and "64 KB" in r.page
    assert "content-length" not in {k.lower() for k in r.request.headers}, "the body was not sent chunked"
    assert body.sent <= FORM_MAX_BODY + 2 * 16384, f"read {body.sent} bytes of a refused body"
    assert site.subscriber("big@example.org") is None and site.outbox() == []


def test_a_declared_oversized_body_is_refused_before_it_is_read(site):
    r = site.post("/subscribe", content=b"x" * 10, headers={"Content-Length": str(FORM_MAX_BODY + 1),
                                                          "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "too much to send" in r.page


def test_a_chunked_100_mb_unsigned_webhook_is_refused_while_it_streams(site):
    body = Stream(100 * 1024 * 1024, b"[" * 65536)
    r = site.post("/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"})
    # Not configured in this site (no public key): refused before reading, with 503. Either way, not read through.
    assert r.status_code in (413, 503)
    assert body.sent <= WEBHOOK_MAX_BODY + 2 * 65536


@pytest.fixture
def signed_site(tmp_path, portal):
    from conftest import _close, _site
    from test_sendgrid_webhook import keypair

    private, public = keypair()
    s = _site(tmp_path, f"sqlite:///{tmp_path}/web.db", portal, sendgrid_webhook_public_key=public)
    s.private = private
    yield s
    _close(s, portal)


def _signed(site, body: bytes) -> dict:
    from test_sendgrid_webhook import sign

    return sign(site.private, body, site.clock())


def test_a_chunked_100_mb_signed_looking_webhook_is_refused_while_it_streams(signed_site):
    site = signed_site
    body = Stream(100 * 1024 * 1024, b"[" * 65536)
    r = site.post("/webhooks/sendgrid", content=body, headers=_signed(site, b"[]"))
    assert r.status_code == 413
    assert body.sent <= WEBHOOK_MAX_BODY + 2 * 65536


def test_a_signed_webhook_nested_100000_deep_is_a_clear_400(signed_site):
    site = signed_site
    body = b"[" * 100_000 + b"]" * 100_000
    r = site.post("/webhooks/sendgrid", content=body, headers=_signed(site, body))
    assert r.status_code == 400 and "nested deeper" in r.text and "Traceback" not in r.text
    # Brackets inside strings are text, not depth.
    fine = json.dumps([{"event": "open", "email": "a@example.org", "note": "[" * 500}]).encode()
    r = site.post("/webhooks/sendgrid", content=fine, headers=_signed(site, fine))
    assert r.status_code == 200, r.text


def test_the_403_and_415_pages_name_the_real_cause(site):
    page = site.get("/subscribe")
    token = csrf_of(page.text)
    data = {"csrf_token": token, "email": "ann@example.org", "topics": "clinical-trials"}
    wrong_type = site.post("/subscribe", content=json.dumps(data), headers={"Content-Type": "application/json"})
    assert wrong_type.status_code == 415 and "sent in another format" in wrong_type.page
    assert "cookie" not in wrong_type.page.lower()
    no_cookie = site.post("/subscribe", data=data, ip="192.0.2.77")
    assert no_cookie.status_code == 403 and "needs a cookie from our own page, and none came" in no_cookie.page
    wrong_token = site.post("/subscribe", data={**data, "csrf_token": "x" * 64})
    assert wrong_token.status_code == 403 and "was not, or the page was open a long time" in wrong_token.page
    assert site.subscriber("ann@example.org") is None
    broken = site.post("/subscribe", content=b"--zz\r\nnot a part\r\n--zz--",
                       headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert broken.status_code == 400 and "in a shape we cannot read" in broken.page


SHAPES = [
    ({"Content-Type": "multipart/form-data; boundary=zz"}, b"--zz\r\nnot a part\r\n--zz--"),
    ({"Content-Type": "multipart/form-data"}, b"no boundary at all"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"%%%=%ZZ&&&=" * 50),
    ({"Content-Type": "application/x-www-form-urlencoded"}, "&".join(f"f{i}=1" for i in range(5000)).encode()),
    ({"Content-Type": "application/x-www-form-urlencoded; charset=utf-7"}, b"email=\xff\xfe"),
    ({"Content-Type": "text/plain"}, b"\x00" * 100),
    ({"Content-Length": "-5"}, b""),
    ({"Content-Length": "abc"}, b""),
]
POSTS = ["/subscribe", "/subscribe/resend", "/someone-has-died", "/confirm/abc", "/preferences/abc",
         "/preferences/abc/pause", "/preferences/abc/delete", "/unsubscribe/abc", "/u/abc", "/stop/abc",
         "/webhooks/sendgrid"]


@pytest.mark.parametrize("headers,body", SHAPES, ids=[f"shape{i}" for i in range(len(SHAPES))])
def test_no_request_shape_gives_a_500(signed_site, headers, body):
    site = signed_site
    site.get("/subscribe")  # a CSRF cookie, so the forms get past it to the parser where they can
    before = site.snapshot()
    for url in POSTS:
        r = site.post(url, content=body, headers=headers)
        assert r.status_code < 500, (url, r.status_code, r.text[:200])
        assert "Traceback" not in r.text
    assert site.snapshot() == before
