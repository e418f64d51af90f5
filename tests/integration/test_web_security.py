"""Each security rule of the subscriber web: CSRF, GET is safe, tokens, one-click, headers."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select
from websupport import csrf_of, shape

from pipeline.store import tables
from pipeline.subscribers.tokens import Signer


def _tokens(site, address: str) -> dict:
    prefs = site.confirmed(address)
    row = site.subscriber(address)
    sign = lambda purpose: site.signer.sign(purpose, row.id, row.token_version)  # noqa: E731
    with site.engine.connect() as conn:
        request_id = conn.execute(select(tables.signup_requests.c.id)
                                  .where(tables.signup_requests.c.subscriber_id == row.id)).scalar_one()
    return {"prefs": prefs, "preferences": sign("preferences"), "unsubscribe": sign("unsubscribe"),
            "confirm": site.signer.sign("signup", request_id, row.token_version), "data": sign("data"),
            "stop": sign("stop"), "row": row}


def test_security_headers_on_pages_and_files(site):
    (site.settings.public_dir / "feeds").mkdir(parents=True)
    (site.settings.public_dir / "feeds" / "all.rss.xml").write_text("<rss/>")
    for url in ("/subscribe", "/someone-has-died", "/feeds/all.rss.xml", "/healthz", "/no-such-page",
                "/static/site.css"):
        r = site.get(url)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, url
        assert "default-src 'self'" in csp and "form-action 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert site.get("/no-such-page").status_code == 404


def test_token_pages_are_not_cached_and_have_no_inline_script(site):
    t = _tokens(site, "hana@example.org")
    for url in (t["prefs"], f"/unsubscribe/{t['unsubscribe']}", f"/confirm/{t['confirm']}", "/subscribe"):
        r = site.get(url)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        page = shape(r.text)
        assert page.inline_scripts == 0 and page.style_attrs == 0 and page.html_lang == "en"


def test_every_form_rejects_a_missing_or_wrong_csrf_token(site):
    t = _tokens(site, "ivan@example.org")
    site.clear_outbox()
    forms = [
        ("/subscribe", {"email": "x@example.org", "topics": "clinical-trials", "cadence": "weekly"}),
        ("/subscribe/resend", {"r": "x"}),
        (f"/confirm/{t['confirm']}", {}),
        (f"/preferences/{t['preferences']}", {"topics": "clinical-trials", "cadence": "monthly"}),
        (f"/preferences/{t['preferences']}/pause", {"weeks": "4"}),
        (f"/preferences/{t['preferences']}/delete", {}),
        (f"/unsubscribe/{t['unsubscribe']}", {"action": "leave"}),
        ("/someone-has-died", {"email": "ivan@example.org"}),
        (f"/stop/{t['stop']}", {}),
    ]
    good = csrf_of(site.get("/subscribe").text)
    before = site.snapshot()
    for action, data in forms:
        missing = site.post(action, data=data)
        assert missing.status_code == 403, action
        assert "Please try that again" in missing.page
        wrong = site.post(action, data={**data, "csrf_token": good[:-2] + "00"})
        assert wrong.status_code == 403, action
        # A valid-looking field without the matching cookie (as from another site) fails too.
        fresh = site.request("POST", action, data={**data, "csrf_token": good}, ip="192.0.2.99")
        assert fresh.status_code == 403, action
    assert site.snapshot() == before
    assert site.outbox() == []


def test_get_never_changes_state(site):
    t = _tokens(site, "jo@example.org")
    site.signup("pending@example.org")
    (site.settings.public_dir / "index.html").write_text("<!doctype html><title>x</title>")
    before = site.snapshot()
    gets = ["/", "/index.html", "/healthz", "/subscribe", "/someone-has-died", t["prefs"],
            f"/preferences/{t['preferences']}?saved=paused", f"/preferences/{t['preferences']}/delete",
            f"/confirm/{t['confirm']}", f"/unsubscribe/{t['unsubscribe']}", f"/u/{t['unsubscribe']}",
            f"/data/{t['data']}", f"/stop/{t['stop']}", "/static/site.css", "/static/tz.js"]
    for url in gets:
        for method in ("GET", "HEAD"):
            r = site.request(method, url)
            assert r.status_code == 200, (method, url, r.status_code)
    assert site.snapshot() == before
    assert site.subscriber("jo@example.org").status == "confirmed"


def _altered(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


@pytest.mark.parametrize("how", ["altered", "forged", "wrong-purpose", "garbage"])
def test_bad_tokens_change_nothing_and_explain(site, how):
    t = _tokens(site, "kim@example.org")
    row = t["row"]
    forger = Signer("another-secret-key-entirely-" + "y" * 20)

    def bad(purpose: str) -> str:
        if how == "altered":
            return _altered(t[purpose])
        if how == "forged":
            return forger.sign(purpose, row.id, row.token_version)
        if how == "wrong-purpose":
            return t["preferences" if purpose != "preferences" else "unsubscribe"]
        return "not-a-token"

    csrf = csrf_of(site.get("/subscribe").text)
    site.clear_outbox()
    before = site.snapshot()
    requests = [
        ("GET", f"/confirm/{bad('confirm')}", None),
        ("POST", f"/confirm/{bad('confirm')}", {"csrf_token": csrf}),
        ("GET", f"/preferences/{bad('preferences')}", None),
        ("POST", f"/preferences/{bad('preferences')}", {"csrf_token": csrf, "topics": "palliative-care",
                                                        "cadence": "monthly"}),
        ("POST", f"/preferences/{bad('preferences')}/pause", {"csrf_token": csrf, "weeks": "4"}),
        ("GET", f"/preferences/{bad('preferences')}/delete", None),
        ("POST", f"/preferences/{bad('preferences')}/delete", {"csrf_token": csrf}),
        ("GET", f"/data/{bad('data')}", None),
        ("GET", f"/unsubscribe/{bad('unsubscribe')}", None),
        ("POST", f"/unsubscribe/{bad('unsubscribe')}", {"csrf_token": csrf, "action": "leave"}),
        ("POST", f"/u/{bad('unsubscribe')}", {"List-Unsubscribe": "One-Click"}),
    ]
    for method, url, data in requests:
        r = site.request(method, url, data=data)
        assert r.status_code == 400, (method, url, r.status_code)
        assert "This link doesn't work" in r.page and "Nothing has been changed" in r.page
        assert 'href="/subscribe"' in r.text
        assert "kim@example.org" not in r.text
    assert site.snapshot() == before
    assert site.outbox() == []


def test_one_click_unsubscribe_with_exactly_the_rfc8058_body(any_site):
    site = any_site
    t = _tokens(site, "lee@example.org")
    url = f"/u/{t['unsubscribe']}"
    r = site.post(url, content=b"List-Unsubscribe=One-Click",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "You're unsubscribed" in r.page
    row = site.subscriber("lee@example.org")
    assert row.status == "unsubscribed" and row.unsubscribed_at is not None
    assert row.token_version == t["row"].token_version + 1
    # A provider retrying, or a second click: still a calm 200, nothing else changes.
    before = site.snapshot()
    again = site.post(url, content=b"List-Unsubscribe=One-Click",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert again.status_code == 200 and site.snapshot() == before
    # Old preferences links now say, kindly, that there is no subscription.
    page = site.get(t["prefs"])
    assert page.status_code == 200 and "You're not subscribed" in page.page


def test_one_click_accepts_multipart_and_refuses_other_bodies(site):
    t = _tokens(site, "max@example.org")
    url = f"/u/{t['unsubscribe']}"
    before = site.snapshot()
    for body, ctype in [(b"", "application/x-www-form-urlencoded"),
                        (b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded"),
                        (b"hello", "text/plain")]:
        r = site.post(url, content=body, headers={"Content-Type": ctype})
        assert r.status_code == 400
    assert site.snapshot() == before
    r = site.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    assert site.subscriber("max@example.org").status == "unsubscribed"


def test_resend_value_is_scoped(site):
    other = URLSafeTimedSerializer("another-secret-key-entirely-" + "y" * 20, salt="mbc-pipeline/resend")
    page = site.get("/subscribe")
    r = site.post("/subscribe/resend", data={"csrf_token": csrf_of(page.text), "r": other.dumps("a@example.org")})
    assert r.status_code == 400
