"""Hostile text typed into every editor field is shown as text on every staff page and every public page."""

from __future__ import annotations

import json
import re
import xml.dom.minidom
from html.parser import HTMLParser

import pytest
from staffsupport import ADMIN, EDITOR, REVIEWER, article_form, give_totp, login
from websupport import csrf_of

from pipeline.curation import inbox
from pipeline.curation.parse import Item

P = """<script>alert("xss")</script><img src=x onerror=alert(1)>"'&"""
SLUG = "hostile-text"


class Danger(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._script = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                    "javascript:"):
                self.found.append(f"<{tag} {name}=javascript:>")
        if tag == "img" and dict(attrs).get("src") == "x":
            self.found.append("<img src=x>")
        if tag == "script":
            a = dict(attrs)
            if not a.get("src") and a.get("type") != "application/ld+json":
                self.found.append("inline <script>")
            self._script = True

    def handle_endtag(self, tag):
        self._script = False

    def handle_data(self, data):
        if self._script and "alert" in data and "<" in data:
            self.found.append("alert in a script")


def dangers(html: str) -> list[str]:
    d = Danger()
    d.feed(html)
    return d.found


@pytest.fixture
def ws(make_staff_site):
    return make_staff_site("staff")


def hostile_form(**extra) -> dict:
    values = dict(
        slug=SLUG, title="Fatigue " + P, summary="""Rest 1 < 2 & "quotes" 'single' {{ 7*7 }} ok.""",
        source_title=["Source " + P], source_url=["https://example.org/page?q=%3Cscript%3E&x='y'"],
        content_notes="end-of-life", link="https://example.org/original?a=1&b=%22", publish_at="2026-11-01T09:00",
        body=P + "\n\n[a link](javascript:alert(1)) and <iframe src=https://example.org></iframe>\n\n" + P)
    return article_form(**{**values, **extra})


def test_hostile_text_is_inert_on_every_page(ws):
    from pipeline.operations import build_feeds

    pages: dict[str, str] = {}
    login(ws, EDITOR)
    new = ws.get("/staff/articles/new")
    # Refused fields are echoed back into the form: escaped too.
    r = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(new.text),
                                               **hostile_form(summary="A summary " + P, content_notes=P)})
    assert r.status_code == 400
    pages["editor with errors"] = r.text
    r = ws.post("/staff/preview", data={"csrf_token": csrf_of(new.text), **hostile_form()})
    assert r.status_code == 200
    pages["preview"] = r.text
    r = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(new.text), **hostile_form()})
    assert r.status_code == 303, r.text
    pages["editor"] = ws.get(f"/staff/articles/{SLUG}/edit").text
    pages["dashboard (editor)"] = ws.get("/staff/").text
    ws.clients.clear()
    secret = give_totp(ws, REVIEWER)
    login(ws, REVIEWER, secret=secret)
    pages["dashboard (reviewer)"] = ws.get("/staff/").text
    review = ws.get(f"/staff/articles/{SLUG}/review")
    pages["review"] = review.text
    rev = re.search(r'name="revision" value="([0-9a-f]{64})"', review.text).group(1)
    pages["revision preview"] = ws.get(f"/staff/preview?slug={SLUG}&revision={rev}").text
    r = ws.post(f"/staff/articles/{SLUG}/review", data={"csrf_token": csrf_of(review.text), "revision": rev,
                                                         "action": "changes", "note": "Note " + P})
    pages["changes requested"] = r.text
    pages["review with note"] = ws.get(f"/staff/articles/{SLUG}/review").text
    r = ws.post(f"/staff/articles/{SLUG}/review", data={"csrf_token": csrf_of(review.text), "revision": rev,
                                                         "action": "approve"})
    assert "Approved" in r.text
    pages["digests"] = ws.get("/staff/digests").text
    ws.clients.clear()
    with ws.engine.begin() as conn:
        inbox.store_items(conn, "nci", [Item(guid=None, url="https://example.org/item", title="Item " + P,
                                             summary="Their " + P, published=None)], at=ws.clock())
    secret = give_totp(ws, ADMIN)
    login(ws, ADMIN, secret=secret)
    pages["inbox"] = ws.get("/staff/inbox").text
    accounts = ws.get("/staff/admin/accounts")
    r = ws.post("/staff/admin/accounts", data={"csrf_token": csrf_of(accounts.text), "email": "x@example.org",
                                               "name": "Name " + P[:60], "role": "editor", "credentials": P[:60],
                                               "password": "short"})
    pages["accounts with errors"] = r.text
    r = ws.post(f"/staff/articles/{SLUG}/retract", data={"csrf_token": csrf_of(accounts.text), "reason": "Why " + P})
    assert r.status_code == 200
    pages["audit log"] = ws.get("/staff/admin/audit").text
    pages["audit log filtered"] = ws.get("/staff/admin/audit?slug=" + P[:30]).text
    pages["article after retraction"] = ws.get(f"/staff/articles/{SLUG}/edit").text

    for name, html in pages.items():
        assert dangers(html) == [], name
        assert "<script>alert" not in html, name

    # The public pages and feeds, built before the retraction reached them.
    (ws.settings.content_dir / f"{SLUG}.md").write_text(
        (ws.settings.content_dir / f"{SLUG}.md").read_text().replace("status: retracted", "status: approved"))
    ws.ctx.__dict__.pop("loaded", None)
    from pipeline.editorial.record import set_publication

    with ws.engine.begin() as conn:
        set_publication(conn, SLUG, state="scheduled", publish_at=ws.clock(), author=None, updated_at=None,
                        at=ws.clock(), actor="operator", revision_hash=None)
    build_feeds(ws.ctx, at=ws.clock.advance(minutes=1))
    public = ws.settings.public_dir
    article = (public / "articles" / f"{SLUG}.html").read_text()
    assert "Fatigue" in article
    for path in (public / "articles" / f"{SLUG}.html", public / "index.html", public / "articles.html"):
        html = path.read_text()
        assert dangers(html) == [], path.name
        assert ws.get("/" + str(path.relative_to(public))).status_code == 200
    for feed in ("all.rss.xml", "all.atom.xml"):
        xml.dom.minidom.parseString((public / "feeds" / feed).read_bytes())  # well formed
        assert "<script>" not in (public / "feeds" / feed).read_text()
    items = json.loads((public / "feeds" / "all.json").read_text())["items"]
    mine = next(i for i in items if SLUG in i["url"])
    assert mine["title"] == "Fatigue " + P  # the text itself, kept as text
    assert dangers(mine["content_html"]) == []
