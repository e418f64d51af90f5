"""Each attack from issue 11, tried as a hostile new user would: it changes nothing for the person it targets, and
every page answers honestly. Status, page, database rows and the outbox are checked."""

from __future__ import annotations

import itertools
import re
import string

import itsdangerous.timed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from websupport import bodies, csrf_of

from pipeline.store import tables

PHISH = "your account is locked, visit http://evil.example/reset now"


def test_a_stranger_cannot_rewrite_a_pending_sign_up(site):
    site.signup("owner@example.org", topics=("clinical-trials", "palliative-care"), cadence="weekly", name="Olive")
    [mine] = site.outbox()
    site.clock.advance(minutes=61)  # past the hourly limit, so the stranger's request does send an email
    r = site.signup("OWNER@EXAMPLE.ORG", topics=("hospice-end-of-life",), cadence="monthly", name=PHISH,
                    timezone="Europe/Paris", ip="203.0.113.66")
    assert r.status_code == 200
    row = site.subscriber("owner@example.org")
    assert (row.email, row.name, row.topics, row.cadence, row.timezone) == (
        "owner@example.org", "Olive", "clinical-trials;palliative-care", "weekly", "America/Chicago")
    strangers = site.outbox()[-1]
    for msg in (mine, strangers):
        plain, html = bodies(msg)
        assert "evil.example" not in plain + html and "Olive" not in plain + html
    # The owner's own link confirms the owner's choices, whatever came after.
    confirm = site.link_in(mine, "/confirm/")
    page = site.get(confirm)
    assert "Clinical trials" in page.page and "Hospice" not in page.page and "one email a week" in page.page
    assert site.form_post(confirm, confirm, {}).status_code == 200
    row = site.subscriber("owner@example.org")
    assert (row.status, row.topics, row.cadence, row.timezone, row.name) == (
        "confirmed", "clinical-trials;palliative-care", "weekly", "America/Chicago", "Olive")
    welcome = site.outbox()[-1]
    assert welcome["Subject"] == "Welcome to MBC Digest" and PHISH not in "".join(bodies(welcome))
    # The stranger's link, pressed later, changes nothing: the address is already confirmed.
    stranger_link = site.link_in(strangers, "/confirm/")
    assert "You're subscribed" in site.get(stranger_link).page
    r = site.post(stranger_link, data={"csrf_token": csrf_of(site.get("/subscribe").text)})
    assert r.status_code == 200
    assert site.subscriber("owner@example.org").topics == "clinical-trials;palliative-care"


def test_within_the_hour_a_second_sign_up_sends_nothing_and_keeps_nothing(site):
    site.signup("pat@example.org", name="Pat")
    r = site.signup("Pat@example.org", topics=("hospice-end-of-life",), name=PHISH, ip="203.0.113.66")
    assert "We have sent" not in r.page and len(site.outbox()) == 1
    with site.engine.connect() as conn:
        assert len(conn.execute(select(tables.signup_requests)).all()) == 1


def test_the_confirmation_email_carries_no_text_the_requester_typed(site):
    site.signup("quinn@example.org", name=PHISH)
    [msg] = site.outbox()
    plain, html = bodies(msg)
    assert "evil.example" not in plain and "evil.example" not in html and "locked" not in plain
    assert "evil.example" not in str(msg["Subject"])


def test_an_old_one_click_link_from_before_a_re_subscription_still_unsubscribes(site):
    site.confirmed("rita@example.org")
    row = site.subscriber("rita@example.org")
    old = "/u/" + site.signer.sign("unsubscribe", row.id, row.token_version)
    r = site.post(old, content=b"List-Unsubscribe=One-Click",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and site.subscriber("rita@example.org").status == "unsubscribed"
    site.clock.advance(hours=2)
    site.confirmed("rita@example.org")
    assert site.subscriber("rita@example.org").status == "confirmed"
    r = site.post(old, content=b"List-Unsubscribe=One-Click",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "You're unsubscribed" in r.page and "We won't send you any more email" in r.page
    assert site.subscriber("rita@example.org").status == "unsubscribed"
    # Opened in a browser, the old link offers to stop mail but opens no preferences.
    site.clock.advance(hours=2)
    site.confirmed("rita@example.org")
    page = site.get(old)
    assert page.status_code == 200 and "Stop all email" in page.page and "/preferences/" not in page.text
    site.form_post(old, old.replace("/u/", "/unsubscribe/"), {"action": "leave"})
    assert site.subscriber("rita@example.org").status == "unsubscribed"
    # Pressed once more, it says what is true now.
    again = site.post(old, content=b"List-Unsubscribe=One-Click",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "You were already unsubscribed" in again.page


def test_one_click_for_deleted_data_says_there_is_no_subscription(site):
    prefs = site.confirmed("sid@example.org")
    row = site.subscriber("sid@example.org")
    link = "/u/" + site.signer.sign("unsubscribe", row.id, row.token_version)
    site.form_post(prefs + "/delete", prefs + "/delete", {})
    r = site.post(link, content=b"List-Unsubscribe=One-Click",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "You're not subscribed" in r.page and "You're unsubscribed" not in r.page


def test_an_expired_link_names_its_own_kind(site, monkeypatch):
    site.confirmed("tess@example.org")
    row = site.subscriber("tess@example.org")
    real = itsdangerous.timed.time.time
    with monkeypatch.context() as m:
        m.setattr(itsdangerous.timed.time, "time", lambda: real() - 2 * 3600)
        data = site.signer.sign("data", row.id, row.token_version)
    m2 = monkeypatch.context()
    with m2 as m:
        m.setattr(itsdangerous.timed.time, "time", lambda: real() - 31 * 86400)
        stop = site.signer.sign("stop", row.id, row.token_version)
    r = site.get(f"/data/{data}")
    assert r.status_code == 400 and "Links to download your data work for 1 hour" in r.page
    assert "confirm a subscription" not in r.page
    r = site.get(f"/stop/{stop}")
    assert r.status_code == 400 and "Links to stop all email work for 30 days" in r.page
    assert site.subscriber("tess@example.org").status == "confirmed"


def test_a_name_with_control_characters_is_refused_with_a_reason(site):
    r = site.signup("uli@example.org", name="Uli\x1b[31m")
    assert r.status_code == 400 and "only letters, numbers, spaces and punctuation" in r.page
    assert site.subscriber("uli@example.org") is None and site.outbox() == []


_counter = itertools.count()
printable = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=250)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=printable, cadence=st.sampled_from(["weekly", "monthly", "", "daily", "=1+1"]),
       timezone=st.sampled_from(["UTC", "Europe/London", "Mars/Base", "", "../../etc/passwd"]),
       topics=st.lists(st.sampled_from(["clinical-trials", "palliative-care", "hospice-end-of-life", "nope", ""]),
                       max_size=4))
def test_any_sign_up_fields_answer_honestly_and_never_put_typed_text_in_mail(site, name, cadence, timezone, topics):
    site.clear_outbox()
    n = next(_counter)
    address, ip = f"h{n}@example.org", f"198.51.{n // 250}.{n % 250}"  # one client each: under the hourly IP limit
    page = site.get("/subscribe", ip=ip)
    r = site.post("/subscribe", data={"csrf_token": csrf_of(page.text), "email": address, "name": name,
                                      "topics": topics, "cadence": cadence, "timezone": timezone}, ip=ip)
    assert r.status_code in (200, 400), r.status_code
    sent = site.outbox()
    assert ("We have sent an email to" in r.page) == bool(sent)
    if r.status_code == 400:
        assert not sent and site.subscriber(address) is None
        return
    [msg] = sent
    plain, html = bodies(msg)
    typed = name.strip()
    # Only an entire word or more of the name could carry a message; single letters occur anyway.
    if len(typed) >= 12 and not set(typed) <= set(string.ascii_letters + " "):
        assert typed not in plain and typed not in html
    assert re.search(r"/confirm/[A-Za-z0-9._-]+", plain)
    row = site.subscriber(address)
    assert row.status == "pending" and row.cadence in ("weekly", "monthly")


def test_international_addresses_are_encoded_correctly_in_the_confirmation(site):
    from pathlib import Path

    for address in ("josé@example.com", "user@bücher.example"):
        assert site.signup(address).status_code == 200
    site.deliver()
    raw = [p.read_bytes() for p in sorted(Path(site.settings.outbox).glob("*.eml"))]
    to_lines = sorted(next(line for line in data.splitlines() if line.startswith(b"To: ")) for data in raw)
    assert to_lines == ["To: josé@example.com".encode(), b"To: user@xn--bcher-kva.example"]


def test_a_doubled_slash_never_redirects_to_another_host(site):
    (site.settings.public_dir / "feeds").mkdir(parents=True)
    (site.settings.public_dir / "feeds" / "index.html").write_text("<!doctype html><title>feeds</title>")
    for path in ("//feeds", "///feeds", "/\\feeds", "/feeds"):
        r = site.get("http://testserver" + path, follow_redirects=False)
        if r.status_code == 404:
            continue
        assert r.status_code == 308, (path, r.status_code)
        assert r.headers["location"] == "/feeds/", (path, r.headers["location"])


def test_the_welcome_email_links_the_digest_archive(site):
    archive = site.settings.public_dir / "digests"
    archive.mkdir(parents=True)
    (archive / "index.html").write_text("<!doctype html><title>Past issues</title>")
    site.confirmed("wren@example.org")
    plain, html = bodies(site.outbox()[-1])
    assert "Read the latest issue: http://testserver/digests/" in plain
    assert 'href="http://testserver/digests/"' in html


def test_the_home_page_links_the_digest_archive_once_there_is_one(tmp_path, digest_library):
    from datetime import UTC, datetime
    from pathlib import Path

    from pipeline.feeds import build_site

    root = Path(__file__).resolve().parents[2]
    public = tmp_path / "public"
    kw = {"at": datetime(2026, 11, 30, tzinfo=UTC), "public_dir": public, "site_url": "https://digest.example.org",
          "templates_dir": root / "templates", "workers": 1}
    build_site(digest_library, **kw)
    assert 'href="digests/"' not in (public / "index.html").read_text()
    (public / "digests").mkdir()
    (public / "digests" / "index.html").write_text("<!doctype html><title>Past issues</title>")
    build_site(digest_library, **kw)
    assert 'href="digests/"' in (public / "index.html").read_text()


def test_a_temporary_file_left_by_a_crash_does_not_stay_in_the_outbox(site):
    import os
    import time
    from pathlib import Path

    outbox = Path(site.settings.outbox)
    outbox.mkdir(parents=True, exist_ok=True)
    stale, fresh = outbox / ".confirm.abc.eml.x1y2.tmp", outbox / ".confirm.def.eml.z3.tmp"
    stale.write_bytes(b"half a message")
    fresh.write_bytes(b"being written now")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert site.signup("xavi@example.org").status_code == 200
    site.deliver()
    assert not stale.exists(), "a crash's temporary file stayed in the outbox"
    assert fresh.exists(), "a file another process is writing now was removed"
    assert len(site.outbox()) == 1


def test_confirming_after_a_bounce_says_why_nothing_happened(site):
    from websupport import T0

    from pipeline.subscribers import repository

    site.signup("yara@example.org")
    confirm = site.link_in(site.outbox()[-1], "/confirm/")
    with site.engine.begin() as conn:
        repository.suppress(conn, email="yara@example.org", reason="bounce", at=T0, source="sendgrid")
    r = site.form_post(confirm, confirm, {})
    assert r.status_code == 200 and "We can't send email to this address" in r.page
    assert "removed after 7 days" not in r.page
    assert site.subscriber("yara@example.org").status == "pending"
    assert site.suppression("yara@example.org").reason == "bounce"
    assert len(site.outbox()) == 1
