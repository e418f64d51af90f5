"""The workbench over HTTP: login with a second factor, sessions, editor, review, schedule, admin and inbox."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from staffsupport import (
    ADMIN,
    EDITOR,
    PASSWORD,
    REVIEWER,
    add_accounts,
    article_form,
    content_dir,
    give_totp,
    login,
)
from websupport import csrf_of

from pipeline.editorial import audit, totp
from pipeline.store import tables


@pytest.fixture
def ws(tmp_path, portal):
    from conftest import _close, _site

    s = _site(tmp_path, f"sqlite:///{tmp_path}/web.db", portal, content_dir=content_dir(tmp_path),
              review_mode="staff")
    s.accounts = add_accounts(s)
    yield s
    _close(s, portal)


def post(ws, page_url: str, action: str, data: dict, ip: str = "192.0.2.10"):
    return ws.form_post(page_url, action, data, ip=ip)


def test_editor_writes_reviewer_approves(ws):
    assert login(ws, EDITOR).status_code == 303
    r = post(ws, "/staff/articles/new", "/staff/articles/save", article_form())
    assert r.status_code == 303, r.text
    slug = "resting-when-you-feel-tired"
    assert r.headers["location"] == f"/staff/articles/{slug}/edit?done=submitted"
    assert (ws.settings.content_dir / f"{slug}.md").is_file()
    ws.clients.clear()
    secret = give_totp(ws, REVIEWER)
    assert login(ws, REVIEWER, secret=secret).status_code == 303
    page = ws.get(f"/staff/articles/{slug}/review")
    assert page.status_code == 200 and "Edna Editor" in page.text
    r = ws.post(f"/staff/articles/{slug}/review", data={
        "csrf_token": csrf_of(page.text), "revision": _rev(page.text), "action": "approve", "note": ""})
    assert r.status_code == 200, r.text
    assert "Approved" in r.text
    with ws.engine.connect() as conn:
        reviews = conn.execute(select(tables.reviews)).all()
        pub = conn.execute(select(tables.publications)).first()
    assert [(x.verdict, x.kind) for x in reviews] == [("approved", "staff")]
    assert pub.state == "scheduled"


def _rev(html: str) -> str:
    import re

    return re.search(r'name="revision" value="([0-9a-f]{64})"', html).group(1)


def test_headers_on_every_staff_page(ws):
    login(ws, ADMIN, secret=None)
    for url in ("/staff/login", "/staff/", "/staff/articles/new", "/staff/digests", "/staff/inbox",
                "/staff/admin/accounts", "/staff/admin/audit", "/staff/nothing-here"):
        r = ws.get(url)
        assert r.headers["cache-control"] == "no-store", url
        assert "noindex" in r.headers["x-robots-tag"], url
        assert "script-src 'self'" in r.headers["content-security-policy"], url
        assert "<script>" not in r.text


def test_first_login_enrols_a_second_factor(ws):
    r = login(ws, ADMIN)
    assert r.status_code == 303 and r.headers["location"] == "/staff/"
    with ws.engine.connect() as conn:
        row = conn.execute(select(tables.staff).where(tables.staff.c.email_key == ADMIN)).first()
        events = [e.event for e in audit.entries(conn)]
    assert row.totp_secret and totp.verify(row.totp_secret, totp.code_at(row.totp_secret, ws.clock()), at=ws.clock())
    assert events[-1] == "login"
    assert ws.get("/staff/admin/accounts").status_code == 200
    assert PASSWORD not in ws.get("/staff/admin/audit").text
