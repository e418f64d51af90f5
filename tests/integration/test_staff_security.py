"""The workbench's security rules: every route refused without a live session or with the wrong role (and
nothing changes), session lifetimes and ends, session fixation, CSRF, and login brute force with lockout."""

from __future__ import annotations

import hashlib
from datetime import timedelta

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
    staff_cookie,
)
from websupport import csrf_of

from pipeline.editorial import audit, signin
from pipeline.store import tables
from pipeline.web.staff import GUARDED

SLUG = "resting-when-you-feel-tired"


@pytest.fixture
def ws(make_staff_site):
    return make_staff_site("staff")


def _form_for(path: str, ws) -> dict:
    """A form each POST route would act on, were it allowed."""
    return {"/articles/save": article_form(slug="another-article", title="Another article"),
            "/preview": article_form(), "/articles/{slug}/review": {"action": "approve", "revision": "0" * 64},
            "/articles/{slug}/schedule": {"publish_at": "2027-01-05T09:00"},
            "/articles/{slug}/retract": {"reason": "out of date"},
            "/inbox": {"candidate": "1", "action": "dismiss"},
            "/admin/accounts": {"email": "new@example.org", "name": "New", "role": "admin", "password": PASSWORD},
            "/admin/accounts/disable": {"account": str(ws.accounts["editor"].id)},
            "/admin/accounts/reset-factor": {"account": str(ws.accounts["reviewer"].id)},
            }.get(path, {})


def _state(ws) -> tuple:
    files = {p.name: p.read_bytes() for p in sorted(ws.settings.content_dir.glob("*.md"))}
    return ws.snapshot(), files


def _with_article(ws) -> None:
    """An article written by the editor, approved by a reviewer, so every route has something to act on."""
    login(ws, EDITOR)
    assert ws.form_post("/staff/articles/new", "/staff/articles/save", article_form()).status_code == 303
    ws.clients.clear()
    secret = give_totp(ws, REVIEWER)
    login(ws, REVIEWER, secret=secret)
    page = ws.get(f"/staff/articles/{SLUG}/review")
    import re

    rev = re.search(r'name="revision" value="([0-9a-f]{64})"', page.text).group(1)
    r = ws.post(f"/staff/articles/{SLUG}/review", data={"csrf_token": csrf_of(page.text), "revision": rev,
                                                         "action": "approve"})
    assert r.status_code == 200 and "Approved" in r.text
    ws.clients.clear()


def _walk(ws, routes, *, expect: int, ip: str = "192.0.2.10") -> None:
    token = csrf_of(ws.get("/staff/login", ip=ip).text)
    before = _state(ws)
    for method, path, _handler, _roles in routes:
        url = "/staff" + path.replace("{slug}", SLUG)
        if method == "GET":
            r = ws.get(url, ip=ip)
        else:
            r = ws.post(url, data={"csrf_token": token, **_form_for(path, ws)}, ip=ip)
        assert r.status_code == expect, (method, url, r.status_code)
        if expect == 303:
            assert r.headers["location"] == "/staff/login", url
        assert "Your account can't do this" in r.page if expect == 403 else True
        assert _state(ws) == before, f"{method} {url} changed something"


def test_every_route_refused_without_a_session(ws):
    _with_article(ws)
    _walk(ws, GUARDED, expect=303)


def test_every_route_refused_with_an_expired_session(ws):
    _with_article(ws)
    login(ws, ADMIN, secret=give_totp(ws, ADMIN))
    assert ws.get("/staff/").status_code == 200
    ws.clock.advance(hours=8, minutes=1)
    _walk(ws, GUARDED, expect=303)


def test_a_made_up_or_ended_cookie_is_refused(ws):
    _with_article(ws)
    ws.client().cookies.set("mbc_staff", "made-up-value-" + "x" * 30, domain="testserver.local", path="/staff")
    _walk(ws, GUARDED, expect=303)


@pytest.mark.parametrize("role", ["editor", "reviewer", "admin"])
def test_every_route_refused_to_a_role_that_may_not(ws, role):
    _with_article(ws)
    email = {"editor": EDITOR, "reviewer": REVIEWER, "admin": ADMIN}[role]
    secret = None if role == "editor" else give_totp(ws, email) if role == "admin" else None
    if role == "reviewer":
        with ws.engine.connect() as conn:
            secret = conn.execute(select(tables.staff.c.totp_secret)
                                  .where(tables.staff.c.email_key == REVIEWER)).scalar_one()
    assert login(ws, email, secret=secret).status_code == 303
    forbidden = [r for r in GUARDED if role not in r[3]]
    assert forbidden, "every role is refused something"
    _walk(ws, forbidden, expect=403)


def test_session_lifetimes_idle_and_absolute(ws):
    login(ws, EDITOR)
    assert ws.get("/staff/").status_code == 200
    ws.clock.advance(hours=7, minutes=59)
    assert ws.get("/staff/").status_code == 200  # use keeps it alive
    for _ in range(30):  # used every 7 hours, it still ends 7 days after sign-in
        ws.clock.advance(hours=7)
        r = ws.get("/staff/")
        if r.status_code != 200:
            break
    assert r.status_code == 303
    with ws.engine.connect() as conn:
        row = conn.execute(select(tables.staff_sessions)).first()
    assert ws.clock() - row.created_at > timedelta(days=7) >= ws.clock() - timedelta(hours=7) - row.created_at


def test_logout_password_change_and_disable_end_sessions(ws):
    from pipeline.editorial import staff

    login(ws, EDITOR)
    token = csrf_of(ws.get("/staff/").text)
    r = ws.post("/staff/logout", data={"csrf_token": token})
    assert r.status_code == 200 and "signed out" in r.text
    assert ws.get("/staff/").status_code == 303
    with ws.engine.connect() as conn:
        assert conn.execute(select(tables.staff_sessions)).all() == []

    login(ws, EDITOR)
    assert ws.get("/staff/").status_code == 200
    with ws.engine.begin() as conn:
        staff.set_password(conn, EDITOR, "a brand new long password", at=ws.clock())
    assert ws.get("/staff/").status_code == 303

    login(ws, EDITOR, password="a brand new long password")
    assert ws.get("/staff/").status_code == 200
    with ws.engine.begin() as conn:
        staff.disable(conn, EDITOR, at=ws.clock())
    assert ws.get("/staff/").status_code == 303


def test_session_fixation_the_id_changes_at_login(ws):
    planted = "planted-by-someone-else-" + "y" * 20
    ws.client().cookies.set("mbc_staff", planted, domain="testserver.local", path="/staff")
    secret = give_totp(ws, REVIEWER)
    r = ws.form_post("/staff/login", "/staff/login", {"email": REVIEWER, "password": PASSWORD})
    half = staff_cookie(ws)
    assert r.status_code == 303 and half != planted
    login_code = ws.get("/staff/login/code")
    from pipeline.editorial import totp

    ws.post("/staff/login/code", data={"csrf_token": csrf_of(login_code.text), "code": totp.code_at(secret, ws.clock())})
    full = staff_cookie(ws)
    assert full not in (planted, half)
    with ws.engine.connect() as conn:
        ids = {r.id for r in conn.execute(select(tables.staff_sessions))}
    assert ids == {hashlib.sha256(full.encode()).hexdigest()}  # stored hashed; the half-way id is gone
    attacker = ws.client("198.51.100.7")
    attacker.cookies.set("mbc_staff", half, domain="testserver.local", path="/staff")
    assert ws.get("/staff/", ip="198.51.100.7").status_code == 303
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    assert "Path=/staff" in set_cookie and "Secure" not in set_cookie  # the test site is http


def test_cookie_is_secure_on_an_https_site(ws):
    from types import SimpleNamespace

    from starlette.responses import Response

    from pipeline.web.staff.common import Staff

    https = Staff(SimpleNamespace(settings=ws.settings.evolve(site_url="https://digest.example.org")),
                  ws.app.state.web)
    response = Response()
    https.set_cookie(response, "value")
    assert "Secure" in response.headers["set-cookie"] and "HttpOnly" in response.headers["set-cookie"]


def test_csrf_refused_on_every_staff_form(ws):
    _with_article(ws)
    login(ws, ADMIN, secret=give_totp(ws, ADMIN))
    before = _state(ws)
    for method, path, _h, _roles in GUARDED:
        if method != "POST" or path == "/logout":
            continue
        url = "/staff" + path.replace("{slug}", SLUG)
        for token in (None, "0" * 64):
            data = _form_for(path, ws) | ({"csrf_token": token} if token else {})
            r = ws.post(url, data=data)
            assert r.status_code in (403,), (url, r.status_code)
    r = ws.post("/staff/login", data={"email": EDITOR, "password": PASSWORD})
    assert r.status_code == 403
    r = ws.post("/staff/logout", data={})
    assert r.status_code == 403 and ws.get("/staff/").status_code == 200
    after = _state(ws)
    # Only the admin's session (its last use) may differ.
    assert {k: v for k, v in after[0].items() if k != "staff_sessions"} == \
        {k: v for k, v in before[0].items() if k != "staff_sessions"}
    assert after[1] == before[1]


def test_brute_force_locks_the_account_and_releases_it(ws):
    for i in range(signin.MAX_FAILURES):
        r = ws.form_post("/staff/login", "/staff/login", {"email": EDITOR, "password": f"wrong guess {i}"},
                         ip=f"203.0.113.{i + 1}")
        assert r.status_code == 400 and signin.SAME_ANSWER in r.page
    # Unknown accounts answer with the same words.
    r = ws.form_post("/staff/login", "/staff/login", {"email": "nobody@example.org", "password": "x" * 12})
    assert r.status_code == 400 and signin.SAME_ANSWER in r.page
    # Locked: the right password from a new address is refused too.
    r = ws.form_post("/staff/login", "/staff/login", {"email": EDITOR, "password": PASSWORD}, ip="203.0.113.99")
    assert r.status_code == 429 and "paused for 15 minutes" in r.page
    ws.clock.advance(minutes=14)
    r = ws.form_post("/staff/login", "/staff/login", {"email": EDITOR, "password": PASSWORD}, ip="203.0.113.98")
    assert r.status_code == 429
    ws.clock.advance(minutes=1, seconds=1)
    r = ws.form_post("/staff/login", "/staff/login", {"email": EDITOR, "password": PASSWORD}, ip="203.0.113.97")
    assert r.status_code == 303 and r.headers["location"] == "/staff/"
    with ws.engine.connect() as conn:
        failed = audit.entries(conn, events=("login_failed",))
    assert len(failed) == signin.MAX_FAILURES + 3
    assert {e.actor for e in failed} == {ws.accounts["editor"].actor, "unknown"}
    assert all(EDITOR not in str(e.as_json()) for e in failed)


def test_brute_force_from_one_address_locks_that_address(ws):
    for i in range(signin.MAX_FAILURES):
        ws.form_post("/staff/login", "/staff/login", {"email": f"guess{i}@example.org", "password": "x" * 12},
                     ip="203.0.113.50")
    r = ws.form_post("/staff/login", "/staff/login", {"email": EDITOR, "password": PASSWORD}, ip="203.0.113.50")
    assert r.status_code == 429
    r = ws.form_post("/staff/login", "/staff/login", {"email": EDITOR, "password": PASSWORD}, ip="203.0.113.51")
    assert r.status_code == 303


def test_wrong_one_time_codes_count_and_lock(ws):
    secret = give_totp(ws, REVIEWER)
    for _ in range(signin.MAX_FAILURES):
        r = ws.form_post("/staff/login", "/staff/login", {"email": REVIEWER, "password": PASSWORD})
        assert r.headers["location"] == "/staff/login/code"
        page = ws.get("/staff/login/code")
        r = ws.post("/staff/login/code", data={"csrf_token": csrf_of(page.text), "code": "000000"})
        assert r.status_code == 400
    r = login(ws, REVIEWER, secret=secret)
    assert r.status_code == 429
    assert ws.get("/staff/").status_code == 303


def test_two_factor_off_for_local_trials(tmp_path, portal):
    from conftest import _close, _site

    s = _site(tmp_path, f"sqlite:///{tmp_path}/web.db", portal, content_dir=content_dir(tmp_path), staff_2fa=False)
    add_accounts(s)
    try:
        r = s.form_post("/staff/login", "/staff/login", {"email": REVIEWER, "password": PASSWORD})
        assert r.status_code == 303 and r.headers["location"] == "/staff/"
    finally:
        _close(s, portal)
