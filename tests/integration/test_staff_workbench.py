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


@pytest.fixture(params=["staff"])
def ws(request, make_staff_site):
    return make_staff_site(request.param)


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


SLUG = "resting-when-you-feel-tired"


def _submit(ws, email=EDITOR, **overrides):
    login(ws, email)
    r = ws.form_post("/staff/articles/new", "/staff/articles/save", article_form(**overrides))
    assert r.status_code == 303, r.text
    ws.clients.clear()


def _approve(ws, email=REVIEWER, *, slug=SLUG, password=None):
    from sqlalchemy import select as sel

    with ws.engine.connect() as conn:
        secret = conn.execute(sel(tables.staff.c.totp_secret).where(tables.staff.c.email_key == email)).scalar_one()
    login(ws, email, secret=secret)
    page = ws.get(f"/staff/articles/{slug}/review")
    data = {"csrf_token": csrf_of(page.text), "revision": _rev(page.text), "action": "approve"}
    if password:
        data["password"] = password
    return ws.post(f"/staff/articles/{slug}/review", data=data)


def _edit(ws, slug=SLUG):
    page = ws.get(f"/staff/articles/{slug}/edit")
    import re

    base = re.search(r'name="base" value="([^"]*)"', page.text).group(1)
    return page, base


def test_two_editors_saving_from_the_same_revision(ws):
    from staffsupport import REVIEWER2

    _submit(ws)
    login(ws, EDITOR, ip="192.0.2.1")
    login(ws, REVIEWER2, ip="192.0.2.2", secret=None)
    page1 = ws.get(f"/staff/articles/{SLUG}/edit", ip="192.0.2.1")
    page2 = ws.get(f"/staff/articles/{SLUG}/edit", ip="192.0.2.2")
    import re

    base = re.search(r'name="base" value="([0-9a-f]{64})"', page1.text).group(1)
    first = article_form(slug=SLUG, body="The first editor's words.", base=base, action="save")
    second = article_form(slug=SLUG, body="The second editor's words.", base=base, action="save")
    r1 = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(page1.text), **first}, ip="192.0.2.1")
    assert r1.status_code == 303
    r2 = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(page2.text), **second}, ip="192.0.2.2")
    assert r2.status_code == 409
    assert "Someone else saved this article" in r2.page
    assert "The first editor's words." in r2.page  # theirs is shown
    assert "The second editor's words." in r2.page  # and mine is still in the form
    text = (ws.settings.content_dir / f"{SLUG}.md").read_text()
    assert "The first editor's words." in text and "second editor" not in text
    # Saving again from the newer starting point is deliberate, and works.
    newer = re.search(r'name="base" value="([0-9a-f]{64})"', r2.text).group(1)
    r3 = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(r2.text), **second, "base": newer},
                 ip="192.0.2.2")
    assert r3.status_code == 303
    with ws.engine.connect() as conn:
        bodies = [r.text for r in conn.execute(select(tables.revisions).where(tables.revisions.c.slug == SLUG))]
    assert any("first editor" in b for b in bodies) and any("second editor" in b for b in bodies)


def test_nobody_approves_their_own_revision_in_the_browser(ws):
    from staffsupport import REVIEWER2

    give_totp(ws, REVIEWER)
    with ws.engine.connect() as conn:
        secret = conn.execute(select(tables.staff.c.totp_secret)
                              .where(tables.staff.c.email_key == REVIEWER)).scalar_one()
    login(ws, REVIEWER, secret=secret)
    assert ws.form_post("/staff/articles/new", "/staff/articles/save", article_form()).status_code == 303
    page = ws.get(f"/staff/articles/{SLUG}/review")
    assert "another reviewer must review it" in page.page
    r = ws.post(f"/staff/articles/{SLUG}/review", data={"csrf_token": csrf_of(page.text),
                                                         "revision": _first_rev(ws), "action": "approve"})
    assert r.status_code == 403
    with ws.engine.connect() as conn:
        assert conn.execute(select(tables.reviews)).all() == []
        refused = audit.entries(conn, events=("approval_refused",))
    assert refused and "same account" in refused[-1].detail["reason"]
    ws.clients.clear()
    give_totp(ws, REVIEWER2)
    assert "Approved" in _approve(ws, REVIEWER2).text


def _first_rev(ws):
    with ws.engine.connect() as conn:
        return conn.execute(select(tables.revisions.c.hash)).scalar_one()


def test_approval_asks_for_the_password_after_five_minutes(ws):
    _submit(ws)
    give_totp(ws, REVIEWER)
    with ws.engine.connect() as conn:
        secret = conn.execute(select(tables.staff.c.totp_secret)
                              .where(tables.staff.c.email_key == REVIEWER)).scalar_one()
    login(ws, REVIEWER, secret=secret)
    ws.clock.advance(minutes=5, seconds=1)
    page = ws.get(f"/staff/articles/{SLUG}/review")
    assert 'name="password"' in page.text
    data = {"csrf_token": csrf_of(page.text), "revision": _rev(page.text), "action": "approve"}
    r = ws.post(f"/staff/articles/{SLUG}/review", data={**data, "password": "not the password"})
    assert r.status_code == 400 and "password isn't right" in r.page
    with ws.engine.connect() as conn:
        assert conn.execute(select(tables.reviews)).all() == []
    r = ws.post(f"/staff/articles/{SLUG}/review", data=data)  # no password at all
    assert r.status_code == 400
    r = ws.post(f"/staff/articles/{SLUG}/review", data={**data, "password": PASSWORD})
    assert r.status_code == 200 and "Approved" in r.text
    with ws.engine.connect() as conn:
        assert len(conn.execute(select(tables.reviews)).all()) == 1


@pytest.mark.parametrize("ws", ["staff", "attested"], indirect=True)
def test_an_edit_after_approval_waits_and_the_feed_keeps_the_approved_text(ws):
    """In attested mode too: a saved text never carries a review, so it cannot pass as attested."""
    from pipeline.operations import build_feeds

    _submit(ws, publish_at="2026-11-01T09:00")  # a past time: as soon as it is approved
    give_totp(ws, REVIEWER)
    assert "Approved" in _approve(ws).text
    ws.clients.clear()
    build_feeds(ws.ctx, at=ws.clock())
    page = (ws.settings.public_dir / "articles" / f"{SLUG}.html").read_text()
    assert "Short rests can help." in page
    login(ws, EDITOR)
    editor_page, base = _edit(ws)
    r = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(editor_page.text), **article_form(
        slug=SLUG, base=base, body="Tiredness is common. A changed sentence nobody has approved.")})
    assert r.status_code == 303
    ws.ctx.__dict__.pop("loaded", None)
    build_feeds(ws.ctx, at=ws.clock.advance(minutes=1))
    page = (ws.settings.public_dir / "articles" / f"{SLUG}.html").read_text()
    assert "Short rests can help." in page and "nobody has approved" not in page
    ws.clients.clear()
    ws.clock.advance(minutes=1)
    assert "Approved" in _approve(ws).text
    ws.ctx.__dict__.pop("loaded", None)
    build_feeds(ws.ctx, at=ws.clock.advance(minutes=1))
    page = (ws.settings.public_dir / "articles" / f"{SLUG}.html").read_text()
    assert "nobody has approved" in page


def test_schedule_and_retract(ws):
    _submit(ws, publish_at="2026-12-01T09:00")
    give_totp(ws, REVIEWER)
    assert "Approved" in _approve(ws).text
    ws.clients.clear()
    login(ws, EDITOR)
    page, _ = _edit(ws)
    r = ws.post(f"/staff/articles/{SLUG}/schedule", data={"csrf_token": csrf_of(page.text),
                                                           "publish_at": "2026-12-08T09:00"})
    assert r.status_code == 303
    with ws.engine.connect() as conn:
        pub = conn.execute(select(tables.publications)).first()
    assert pub.publish_at.isoformat() == "2026-12-08T14:00:00+00:00"  # 09:00 in New York
    dash = ws.get("/staff/")
    assert "Week of Monday 7 December 2026" in dash.page
    r = ws.post(f"/staff/articles/{SLUG}/retract", data={"csrf_token": csrf_of(page.text), "reason": ""})
    assert r.status_code == 400
    r = ws.post(f"/staff/articles/{SLUG}/retract", data={"csrf_token": csrf_of(page.text),
                                                          "reason": "A newer guideline replaces it."})
    assert r.status_code == 200
    with ws.engine.connect() as conn:
        pub = conn.execute(select(tables.publications)).first()
        last = audit.entries(conn, events=("retracted",))[-1]
    assert pub.state == "retracted" and last.detail["reason"] == "A newer guideline replaces it."
    assert last.actor == ws.accounts["editor"].actor
    assert "status: retracted" in (ws.settings.content_dir / f"{SLUG}.md").read_text()


def test_preview_renders_the_public_page_without_saving(ws):
    login(ws, EDITOR)
    page = ws.get("/staff/articles/new")
    r = ws.post("/staff/preview", data={"csrf_token": csrf_of(page.text), **article_form()})
    assert r.status_code == 200
    assert "Preview for staff" in r.text and '<article' in r.text and "Short rests can help." in r.text
    assert not list(ws.settings.content_dir.glob("*.md"))
    with ws.engine.connect() as conn:
        assert conn.execute(select(tables.revisions)).all() == []


def test_summary_length_and_grade_are_shown(ws):
    login(ws, EDITOR)
    page = ws.get("/staff/articles/new")
    r = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(page.text),
                                               **article_form(action="add_source")})
    assert "Last checked on the server: 62 characters" in r.page
    assert r.text.count('name="source_url"') == 2
    assert not list(ws.settings.content_dir.glob("*.md"))


def test_admin_adds_disables_and_resets(ws):
    secret = give_totp(ws, ADMIN)
    give_totp(ws, REVIEWER)
    login(ws, ADMIN, secret=secret)
    page = ws.get("/staff/admin/accounts")
    token = csrf_of(page.text)
    r = ws.post("/staff/admin/accounts", data={"csrf_token": token, "email": "nina@example.org", "name": "Nina",
                                               "role": "reviewer", "credentials": "RN", "password": "short"})
    assert r.status_code == 400 and "at least 12" in r.page
    r = ws.post("/staff/admin/accounts", data={"csrf_token": token, "email": "nina@example.org", "name": "Nina",
                                               "role": "reviewer", "credentials": "RN", "password": PASSWORD})
    assert r.status_code == 200 and "Added reviewer Nina" in r.page
    r = ws.post("/staff/admin/accounts/reset-factor", data={"csrf_token": token,
                                                             "account": ws.accounts["reviewer"].id})
    r = ws.post("/staff/admin/accounts/disable", data={"csrf_token": token, "account": ws.accounts["editor"].id})
    assert "Disabled Edna Editor" in r.page
    with ws.engine.connect() as conn:
        rows = {x.email: x for x in conn.execute(select(tables.staff))}
        events = [(e.event, e.actor) for e in audit.entries(conn) if e.event.startswith("staff_")][-3:]
    assert rows["nina@example.org"].role == "reviewer" and rows[EDITOR].disabled
    assert rows[REVIEWER].totp_secret is None
    admin_actor = ws.accounts["admin"].actor
    assert events == [("staff_added", admin_actor), ("staff_changed", admin_actor), ("staff_disabled", admin_actor)]
    r = ws.get("/staff/admin/audit?event=staff_disabled")
    assert "staff_disabled" in r.text and "staff_added</td>" not in r.text


def test_digest_preview_per_variant(ws):
    _submit(ws, publish_at="2026-11-24T09:00")
    give_totp(ws, REVIEWER)
    assert "Approved" in _approve(ws).text
    r = ws.get("/staff/digests")
    assert r.status_code == 200 and "Preview the next weekly issue" in r.page
    r = ws.get("/staff/digests/preview?digest=weekly&topics=symptom-management")
    assert r.status_code == 200 and "Resting when you feel tired" in r.text
    assert "script-src" not in r.headers["content-security-policy"] or "'unsafe-inline'" not in \
        r.headers["content-security-policy"].split("script-src")[1]
    r = ws.get("/staff/digests/preview?digest=weekly&topics=clinical-trials")
    assert r.status_code == 400 and "nobody would get an email" in r.page
    r = ws.get("/staff/digests/preview?digest=nope")
    assert r.status_code == 400


def test_inbox_page_promotes_and_dismisses_with_audit_entries(ws):
    from pipeline.curation import inbox
    from pipeline.curation.parse import Item

    (ws.settings.content_dir / "sources.yaml").write_text(
        "sources:\n  - id: nci\n    name: \"National Cancer Institute: Cancer Currents\"\n"
        "    url: https://www.cancer.gov/news-events/cancer-currents-blog/feed\n    topics: [treatment-progress]\n")
    with ws.engine.begin() as conn:
        inbox.store_items(conn, "nci", [
            Item(guid=None, url="https://example.org/a", title="A new approval", summary="Theirs.", published=None),
            Item(guid=None, url="https://example.org/b", title="Another story", summary="", published=None)],
            at=ws.clock())
        ids = [c.id for c in inbox.candidates(conn)]
    login(ws, EDITOR)
    page = ws.get("/staff/inbox")
    assert page.status_code == 200
    assert "National Cancer Institute: Cancer Currents: Treatment and research progress" in page.page
    assert "A new approval" in page.page and "never" in page.page  # the source's health: never fetched yet
    token = csrf_of(page.text)
    r = ws.post("/staff/inbox", data={"csrf_token": token, "candidate": ids[1], "action": "dismiss"})
    assert r.status_code == 200 and "Another story" not in r.page
    r = ws.post("/staff/inbox", data={"csrf_token": token, "candidate": ids[0], "action": "promote", "slug": "Bad Slug"})
    assert r.status_code == 400 and "Nothing was changed" in r.page
    r = ws.post("/staff/inbox", data={"csrf_token": token, "candidate": ids[0], "action": "promote",
                                      "slug": "new-approval"})
    assert r.status_code == 303 and r.headers["location"] == "/staff/articles/new-approval/edit"
    draft = ws.get("/staff/articles/new-approval/edit")
    assert draft.status_code == 200 and "write its title and summary" in draft.page
    assert 'value="https://example.org/a"' in draft.text  # the original is the link and the first source
    with ws.engine.connect() as conn:
        events = [(e.event, e.actor, e.slug) for e in audit.entries(conn, events=("inbox_promoted", "inbox_dismissed"))]
        states = {c.id: c.state for c in inbox.candidates(conn, states=("new", "dismissed", "promoted"))}
    actor = ws.accounts["editor"].actor
    assert events == [("inbox_dismissed", actor, None), ("inbox_promoted", actor, "new-approval")]
    assert states == {ids[0]: "promoted", ids[1]: "dismissed"}
    # The editor writes its title and summary in the same form, and it saves as a revision.
    form = article_form(slug="new-approval", title="A new treatment is approved", base="unparsed", action="save",
                        summary="A medicine was approved for some people with MBC.", topics=["treatment-progress"],
                        link="https://example.org/a")
    r = ws.post("/staff/articles/save", data={"csrf_token": csrf_of(draft.text), **form})
    assert r.status_code == 303, r.text


def test_sessions_and_reviews_on_postgresql_too(db_url, tmp_path, portal):
    from conftest import _close, _site

    s = _site(tmp_path, db_url, portal, content_dir=content_dir(tmp_path), review_mode="staff")
    try:
        s.accounts = add_accounts(s)
        _submit(s)
        give_totp(s, REVIEWER)
        assert "Approved" in _approve(s).text
        with s.engine.connect() as conn:
            assert conn.execute(select(tables.publications.c.state)).scalar_one() == "scheduled"
            assert len(conn.execute(select(tables.staff_sessions)).all()) == 2
    finally:
        _close(s, portal)
