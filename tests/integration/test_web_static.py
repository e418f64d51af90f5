"""Feeds and the static site: content types, validators, 304s, gzip, and nothing outside public/."""

from __future__ import annotations

import os
import time
from email.utils import formatdate

import httpx
import pytest

from pipeline.web.static import PublicFiles

FEED = '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>MBC</title>' + (
    "<item><title>An article about living well</title></item>" * 20) + "</channel></rss>\n"


@pytest.fixture
def public(site):
    root = site.settings.public_dir
    (root / "feeds").mkdir(parents=True)
    (root / "feeds" / "all.rss.xml").write_text(FEED)
    (root / "feeds" / "all.atom.xml").write_text(FEED.replace("rss", "feed"))
    (root / "feeds" / "all.json").write_text('{"version": "https://jsonfeed.org/version/1.1", "items": []}' + " " * 300)
    (root / "articles").mkdir()
    (root / "articles" / "a.html").write_text("<!doctype html><title>A</title>")
    (root / "index.html").write_text("<!doctype html><title>Feeds</title>")
    (root / "feeds" / ".all.rss.xml.123.tmp").write_text("half a feed")
    return root


@pytest.mark.parametrize("path, ctype", [
    ("/feeds/all.rss.xml", "application/rss+xml"),
    ("/feeds/all.atom.xml", "application/atom+xml"),
    ("/feeds/all.json", "application/feed+json"),
    ("/articles/a.html", "text/html"),
    ("/", "text/html"),
])
def test_content_types_and_validators(site, public, path, ctype):
    r = site.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == ctype
    assert r.headers["etag"].startswith('"') and r.headers["last-modified"].endswith("GMT")


def test_conditional_get_gives_304(site, public):
    first = site.get("/feeds/all.rss.xml", headers={"Accept-Encoding": "identity"})
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    r = site.get("/feeds/all.rss.xml", headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert site.get("/feeds/all.rss.xml", headers={"If-None-Match": f'W/{etag}'}).status_code == 304
    assert site.get("/feeds/all.rss.xml", headers={"If-None-Match": '"other"'}).status_code == 200
    assert site.get("/feeds/all.rss.xml", headers={"If-Modified-Since": modified}).status_code == 304
    past = formatdate(time.time() - 86400 * 30, usegmt=True)
    os.utime(public / "feeds" / "all.rss.xml", (time.time(), time.time()))
    assert site.get("/feeds/all.rss.xml", headers={"If-Modified-Since": past}).status_code == 200


def test_gzip_when_asked(site, public):
    r = site.get("/feeds/all.rss.xml", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    assert r.text == FEED  # httpx decodes; the wire size is smaller
    assert int(r.headers["content-length"]) < len(FEED.encode())
    plain = site.get("/feeds/all.rss.xml", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != r.headers["etag"]
    gz304 = site.get("/feeds/all.rss.xml", headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["etag"]})
    assert gz304.status_code == 304


def test_etag_is_stable_across_instances_and_changes_with_the_bytes(site, public, portal):
    etag = site.get("/feeds/all.rss.xml").headers["etag"]

    async def fresh_instance():
        transport = httpx.ASGITransport(app=PublicFiles(public))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
            return (await client.get("/feeds/all.rss.xml")).headers["etag"]

    assert portal.call(fresh_instance) == etag
    os.utime(public / "feeds" / "all.rss.xml", (1, 1))  # same bytes, other mtime: same ETag
    assert site.get("/feeds/all.rss.xml").headers["etag"] == etag
    (public / "feeds" / "all.rss.xml").write_text(FEED.replace("MBC", "MBC Digest"))
    changed = site.get("/feeds/all.rss.xml")
    assert changed.headers["etag"] != etag and "MBC Digest" in changed.text


def test_nothing_outside_public_and_no_half_written_files(site, public):
    assert site.get("/feeds/.all.rss.xml.123.tmp").status_code == 404
    assert site.get("/feeds/../../web.db").status_code == 404
    assert site.get("/%2e%2e/web.db").status_code == 404
    assert site.get("/feeds/missing.rss.xml").status_code == 404
    assert site.get("/articles").status_code in (307, 308)
    assert site.post("/feeds/all.rss.xml").status_code == 405


def test_head_and_health(site, public):
    r = site.request("HEAD", "/feeds/all.rss.xml", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) == len(FEED.encode())
    health = site.get("/healthz")
    assert health.status_code == 200 and health.text == "ok"
