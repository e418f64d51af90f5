"""Sign-up with double opt-in: the form, the confirmation email, the POST behind one button, the welcome email."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from sqlalchemy import func, insert, select
from websupport import T0, bodies, csrf_of, shape

from pipeline.store import tables
from pipeline.subscribers import lifecycle, repository


def test_form_offers_default_topics_and_keeps_end_of_life_opt_in(site):
    r = site.get("/subscribe")
    assert r.status_code == 200
    html = r.text
    assert 'id="topic-clinical-trials" name="topics" value="clinical-trials" checked' in html
    assert re.search(r'id="topic-hospice-end-of-life" name="topics" value="hospice-end-of-life"\s+aria', html)
    assert "only send it if you tick this box" in html
    page = shape(html)
    assert page.html_lang == "en"
    assert page.inline_scripts == 0 and page.style_attrs == 0
    for field in page.inputs:
        if field.get("type") not in ("hidden", "submit"):
            assert field["id"] in page.labels_for, f"{field['id']} has no label"
    assert all(i in page.ids for i in page.described_by)
    assert 'name="website"' in html and 'tabindex="-1"' in html


def test_sign_up_sends_one_confirmation_and_stores_a_pending_subscriber(any_site):
    site = any_site
    r = site.signup("Ann@Example.org", topics=("clinical-trials", "hospice-end-of-life"), cadence="monthly")
    assert r.status_code == 200
    assert "Please check your inbox" in r.page and "Ann@example.org" in r.page
    row = site.subscriber("ann@example.org")
    assert row.status == "pending" and row.consent_at is None
    assert row.topics == "clinical-trials;hospice-end-of-life" and row.cadence == "monthly"
    assert row.timezone == "America/Chicago" and row.confirmation_sent_at == T0
    [msg] = site.outbox()
    assert msg["To"] == "Ann@example.org"
    assert msg["Subject"] == "Please confirm your MBC Digest subscription"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"] and msg["Date"]
    plain, html = bodies(msg)
    confirm = site.link_in(msg, "/confirm/")
    claims = site.signer.verify("signup", confirm.removeprefix("/confirm/"))
    with site.engine.connect() as conn:
        [request] = conn.execute(select(tables.signup_requests)).all()
    assert claims.subscriber_id == request.id and claims.version == row.token_version
    assert (request.subscriber_id, request.topics, request.cadence) == (row.id, row.topics, "monthly")
    assert "7 days" in plain and "<a href=" in html


def test_confirm_is_a_post_behind_one_button_and_records_consent(any_site):
    site = any_site
    site.signup("ben@example.org")
    confirm = site.link_in(site.outbox()[-1], "/confirm/")
    before = site.snapshot()
    page = site.get(confirm)
    assert page.status_code == 200 and page.text.count("<button") == 1
    assert site.snapshot() == before, "opening the confirmation link changed something"
    r = site.post(confirm, data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and "You're subscribed" in r.page
    row = site.subscriber("ben@example.org")
    assert row.status == "confirmed" and row.consent_source == "web-double-opt-in" and row.consent_at == T0
    welcome = site.outbox()[-1]
    assert welcome["Subject"] == "Welcome to MBC Digest"
    plain, _ = bodies(welcome)
    assert "one email a week" in plain and "Clinical trials and research participation" in plain
    assert "Hospice" not in plain
    prefs = site.link_in(welcome, "/preferences/")
    assert site.get(prefs).status_code == 200
    # Pressing again does nothing new: no second welcome.
    count = len(site.outbox())
    again = site.post(confirm, data={"csrf_token": csrf_of(page.text)})
    assert again.status_code == 200 and len(site.outbox()) == count


def test_page_says_an_email_was_sent_only_when_one_was_queued(site):
    site.confirmed("known@example.org")
    site.signup("pending@example.org")
    with site.engine.begin() as conn:
        repository.suppress(conn, email="bounced@example.org", reason="bounce", at=T0, source="sendgrid")
    cases = {"new@example.org": ("sent", 1), "pending@example.org": ("too-soon", 0),
             "known@example.org": ("too-soon", 0), "bounced@example.org": ("suppressed", 0)}
    for address, (state, emails) in cases.items():
        before = len(site.outbox())
        r = site.signup(address)
        assert r.status_code == 200
        assert len(site.outbox()) - before == emails, address
        said_sent = "We have sent an email to" in r.page
        assert said_sent == (emails == 1), (address, r.page)
        if state == "too-soon":
            assert "less than an hour ago, so we haven't sent another one" in r.page
        if state == "suppressed":
            assert "We can't send email to this address" in r.page and "We haven't sent anything" in r.page
    site.clock.advance(minutes=61)
    before = len(site.outbox())
    r = site.signup("known@example.org")
    assert "We have sent an email to" in r.page and len(site.outbox()) == before + 1
    assert site.outbox()[-1]["Subject"] == "You're already subscribed to MBC Digest"


def test_a_bounced_or_spam_reported_address_never_gets_a_confirmation(site):
    with site.engine.begin() as conn:
        repository.suppress(conn, email="carol@example.org", reason="spamreport", at=T0, source="sendgrid")
    r = site.signup("Carol@Example.org")
    assert r.status_code == 200 and "We have sent" not in r.page
    assert site.outbox() == []
    assert site.subscriber("carol@example.org") is None


def test_confirmation_at_most_once_an_hour_and_resend_obeys_it(site):
    r = site.signup("dan@example.org")
    assert len(site.outbox()) == 1
    site.signup("dan@example.org")
    resend = site.post("/subscribe/resend", data={"csrf_token": csrf_of(r.text),
                                                  "r": re.search(r'name="r" value="([^"]+)"', r.text).group(1)})
    assert resend.status_code == 200 and "we haven't sent another one now" in resend.page
    assert "We have sent" not in resend.page
    assert len(site.outbox()) == 1
    site.clock.advance(minutes=61)
    resend = site.post("/subscribe/resend", data={"csrf_token": csrf_of(r.text),
                                                  "r": re.search(r'name="r" value="([^"]+)"', r.text).group(1)})
    assert resend.status_code == 200 and "We have sent the email again" in resend.page
    assert len(site.outbox()) == 2
    assert site.subscriber("dan@example.org").confirmation_sent_at == T0 + timedelta(minutes=61)


def test_resend_value_cannot_be_forged(site):
    r = site.get("/subscribe")
    forged = site.post("/subscribe/resend", data={"csrf_token": csrf_of(r.text), "r": "victim@example.org"})
    assert forged.status_code == 400 and site.outbox() == []


def test_honeypot_does_nothing(site):
    r = site.signup("eve@example.org", website="filled by a bot")
    assert r.status_code == 400 and "We couldn't sign you up" in r.page and "Nothing has been sent" in r.page
    assert "We have sent" not in r.page
    assert site.subscriber("eve@example.org") is None and site.outbox() == []


def test_rate_limit_per_ip(site):
    for i in range(10):
        assert site.signup(f"person{i}@example.org", ip="198.51.100.7").status_code == 200
    blocked = site.signup("person10@example.org", ip="198.51.100.7")
    assert blocked.status_code == 429 and "try again in an hour" in blocked.page
    assert site.subscriber("person10@example.org") is None
    assert site.signup("person11@example.org", ip="198.51.100.8").status_code == 200
    site.clock.advance(minutes=61)
    assert site.signup("person12@example.org", ip="198.51.100.7").status_code == 200


def test_rate_limit_per_address_across_ips(site):
    for i in range(5):
        assert site.signup("target@example.org", ip=f"203.0.113.{i}").status_code == 200
    with site.engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(tables.rate_events)).scalar_one()
    sixth = site.signup("target@example.org", ip="203.0.113.99", cadence="monthly")
    assert sixth.status_code == 200 and "We have had several requests" in sixth.page
    assert "We have sent" not in sixth.page
    assert site.subscriber("target@example.org").cadence == "weekly", "a blocked sign-up still wrote"
    with site.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.rate_events)).scalar_one() == events + 1
        keys = [k for (k,) in conn.execute(select(tables.rate_events.c.key))]
    assert not any("@" in k or "203.0.113" in k for k in keys), "rate keys must not hold addresses or IPs"
    assert len(site.outbox()) == 1


def test_invalid_input_is_explained_next_to_the_field(site):
    r = site.signup("not-an-address", topics=())
    assert r.status_code == 400
    page = shape(r.text)
    assert 'role="alert"' in r.text
    assert 'id="email-error"' in r.text and 'aria-invalid="true"' in r.text
    assert "email-error" in page.described_by and "topics-error" in page.described_by
    assert "Please choose at least one topic." in r.page
    assert 'value="not-an-address"' in r.text
    assert site.snapshot()["subscribers"] == [] and site.outbox() == []


def test_unknown_topic_is_refused(site):
    r = site.signup("fay@example.org", topics=("clinical-trials", "made-up"))
    assert r.status_code == 400 and site.subscriber("fay@example.org") is None


def test_unconfirmed_sign_ups_expire_after_seven_days(any_site):
    site = any_site
    site.signup("old@example.org")
    site.confirmed("kept@example.org")
    with site.engine.begin() as conn:
        conn.execute(insert(tables.subscribers).values(
            email="imported@example.org", email_key="imported@example.org", name="", topics="", cadence="weekly",
            timezone="UTC", status="pending", created_at=T0, updated_at=T0, token_version=0))
    assert lifecycle.expire_unconfirmed(site.engine, T0 + timedelta(days=6)) == 0
    assert lifecycle.expire_unconfirmed(site.engine, T0 + timedelta(days=7, minutes=1)) == 1
    assert site.subscriber("old@example.org") is None
    assert site.subscriber("kept@example.org").status == "confirmed"
    assert site.subscriber("imported@example.org") is not None


def test_expired_confirmation_link_explains_and_changes_nothing(site, monkeypatch):
    import itsdangerous.timed

    site.signup("gil@example.org")
    row = site.subscriber("gil@example.org")
    with site.engine.connect() as conn:
        request_id = conn.execute(select(tables.signup_requests.c.id)).scalar_one()
    real = itsdangerous.timed.time.time
    with monkeypatch.context() as m:
        m.setattr(itsdangerous.timed.time, "time", lambda: real() - 8 * 86400)
        old = site.signer.sign("signup", request_id, row.token_version)
    page = site.get(f"/confirm/{old}")
    assert page.status_code == 400 and "This link has expired" in page.page and 'href="/subscribe"' in page.text
    assert "Links to confirm a subscription work for 7 days" in page.page
    r = site.post(f"/confirm/{old}", data={"csrf_token": csrf_of(site.get("/subscribe").text)})
    assert r.status_code == 400 and "This link has expired" in r.page
    assert site.subscriber("gil@example.org").status == "pending"


def test_no_addresses_in_logs_at_info(site, caplog):
    caplog.set_level(logging.DEBUG)
    site.confirmed("private.person@example.org")
    site.signup("private.person@example.org")
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            assert "private.person" not in record.getMessage()
            assert "private.person" not in str(record.__dict__)


def test_an_address_sendgrid_cannot_take_is_explained_at_sign_up_not_lost(sendgrid_site, site):
    r = sendgrid_site.signup("zoë@example.org")
    assert r.status_code == 400
    assert "we cannot send email to an address with letters such as é or ü yet" in r.page
    assert 'id="email-error"' in r.text and 'value="zoë@example.org"' in r.text
    assert sendgrid_site.snapshot()["subscribers"] == []
    # The same address through the outbox folder (or SMTP) is fine: the refusal is the backend's, not the form's.
    assert site.signup("zoë@example.org").status_code == 200
    assert [m["To"] for m in site.outbox()] == ["zoë@example.org"]
