"""Preferences, pausing, leaving (all, end-of-life only, or a pause), someone who has died, and one's own data."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import insert, select
from websupport import T0, bodies, csrf_of

from pipeline.store import tables
from pipeline.subscribers import repository


def _unsubscribe_url(site, address: str) -> str:
    row = site.subscriber(address)
    return "/unsubscribe/" + site.signer.sign("unsubscribe", row.id, row.token_version)


def test_change_topics_and_cadence(any_site):
    site = any_site
    prefs = site.confirmed("nia@example.org")
    page = site.get(prefs)
    assert page.status_code == 200
    assert 'value="hospice-end-of-life" aria-describedby' in page.text, "end-of-life must start unchecked"
    site.clock.advance(days=1)
    r = site.post(prefs, data={"csrf_token": csrf_of(page.text), "topics": ["palliative-care", "hospice-end-of-life"],
                               "cadence": "monthly"})
    assert r.status_code == 303 and r.headers["location"].endswith("?saved=preferences")
    row = site.subscriber("nia@example.org")
    assert row.topics == "palliative-care;hospice-end-of-life" and row.cadence == "monthly"
    assert row.updated_at == T0 + timedelta(days=1)
    shown = site.get(r.headers["location"])
    assert "Your choices are saved." in shown.page
    assert 'value="hospice-end-of-life" checked' in shown.text


def test_no_topics_is_explained_and_changes_nothing(site):
    prefs = site.confirmed("oli@example.org")
    page = site.get(prefs)
    before = site.snapshot()
    r = site.post(prefs, data={"csrf_token": csrf_of(page.text), "cadence": "monthly"})
    assert r.status_code == 400 and "Please choose at least one topic." in r.page and 'role="alert"' in r.text
    assert site.snapshot() == before


def test_pause_and_resume_from_preferences(site):
    prefs = site.confirmed("pat@example.org")
    page = site.get(prefs)
    for weeks in (4, 8, 12):
        r = site.post(prefs + "/pause", data={"csrf_token": csrf_of(page.text), "weeks": str(weeks)})
        assert r.status_code == 303
        assert site.subscriber("pat@example.org").paused_until == T0 + timedelta(weeks=weeks)
    shown = site.get(r.headers["location"])
    assert "paused until" in shown.page and "Start my emails again now" in shown.page
    with site.engine.connect() as conn:
        assert repository.still_mailable_ids(conn, [site.subscriber("pat@example.org").id], at=T0) == set()
    bad = site.post(prefs + "/pause", data={"csrf_token": csrf_of(page.text), "weeks": "5"})
    assert bad.status_code == 400
    r = site.post(prefs + "/pause", data={"csrf_token": csrf_of(page.text), "weeks": "0"})
    assert r.status_code == 303 and site.subscriber("pat@example.org").paused_until is None


def test_unsubscribe_page_offers_three_ways_and_leaving_takes_effect_at_once(any_site):
    site = any_site
    site.confirmed("quinn@example.org")
    url = _unsubscribe_url(site, "quinn@example.org")
    page = site.get(url)
    assert page.status_code == 200
    assert "Stop all email" in page.page and "Pause for 4 weeks" in page.page and "Pause for 12 weeks" in page.page
    assert "You don't get articles about hospice" in page.page
    assert 'href="/someone-has-died"' in page.text
    r = site.post(url, data={"csrf_token": csrf_of(page.text), "action": "leave"})
    assert r.status_code == 200 and "You're unsubscribed" in r.page
    row = site.subscriber("quinn@example.org")
    assert row.status == "unsubscribed"
    with site.engine.connect() as conn:
        assert repository.still_mailable_ids(conn, [row.id], at=T0) == set()


def test_stop_only_end_of_life_topics(site):
    site.signup("rae@example.org", topics=("palliative-care", "hospice-end-of-life"))
    confirm = site.link_in(site.outbox()[-1], "/confirm/")
    site.form_post(confirm, confirm, {})
    url = _unsubscribe_url(site, "rae@example.org")
    page = site.get(url)
    assert "Stop only end-of-life articles" in page.page
    r = site.post(url, data={"csrf_token": csrf_of(page.text), "action": "stop-sensitive"})
    assert r.status_code == 200 and "no more end-of-life articles" in r.page
    row = site.subscriber("rae@example.org")
    assert row.status == "confirmed" and row.topics == "palliative-care"


def test_stopping_the_only_topic_stops_everything_rather_than_switching_to_defaults(site):
    site.signup("sam@example.org", topics=("hospice-end-of-life",))
    confirm = site.link_in(site.outbox()[-1], "/confirm/")
    site.form_post(confirm, confirm, {})
    url = _unsubscribe_url(site, "sam@example.org")
    r = site.form_post(url, url, {"action": "stop-sensitive"})
    assert r.status_code == 200 and "stopped all email" in r.page
    assert site.subscriber("sam@example.org").status == "unsubscribed"


def test_pause_from_the_unsubscribe_page(site):
    site.confirmed("tia@example.org")
    url = _unsubscribe_url(site, "tia@example.org")
    r = site.form_post(url, url, {"action": "pause", "weeks": "8"})
    assert r.status_code == 200 and "Your emails are paused" in r.page
    row = site.subscriber("tia@example.org")
    assert row.status == "confirmed" and row.paused_until == T0 + timedelta(weeks=8)


def test_someone_has_died_stops_nothing_itself_and_sends_one_email_with_one_button(any_site):
    site = any_site
    site.confirmed("uma@example.org")
    site.clear_outbox()
    before = site.snapshot()
    known = site.form_post("/someone-has-died", "/someone-has-died", {"email": "UMA@example.org"})
    assert known.status_code == 200 and "We've sent one email to that address" in known.page
    assert "only email this causes" in known.page
    # A stranger's request changes nothing: the inbox decides.
    after = site.snapshot()
    assert after["subscribers"] == before["subscribers"] and after["suppressions"] == []
    [msg] = site.outbox()
    assert msg["To"] == "uma@example.org" and msg["X-Pipeline-Kind"] == "stop"
    plain, html = bodies(msg)
    assert "only email we will send about this" in plain and "nothing else" in plain
    assert html.count("<a ") == 1
    stop = site.link_in(msg, "/stop/")
    page = site.get(stop)
    assert page.status_code == 200 and page.text.count("<button") == 1
    assert site.snapshot()["suppressions"] == []
    # Asking again, from anywhere, within the week sends nothing more, and says so.
    again = site.form_post("/someone-has-died", "/someone-has-died", {"email": "uma@example.org"}, ip="198.51.100.9")
    assert again.status_code == 200 and "We haven't sent anything" in again.page
    assert len(site.outbox()) == 1
    r = site.post(stop, data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and "stopped all email" in r.page
    sup = site.suppression("uma@example.org")
    assert (sup.reason, sup.source) == ("deceased", "web")
    assert site.subscriber("uma@example.org").status == "unsubscribed"
    assert len(site.outbox()) == 1


def test_someone_has_died_for_an_unknown_address_sends_nothing_and_says_so(site):
    r = site.form_post("/someone-has-died", "/someone-has-died", {"email": "nobody@example.org"})
    assert r.status_code == 200 and "We haven't sent anything" in r.page and "We've sent" not in r.page
    assert site.outbox() == [] and site.snapshot()["suppressions"] == []


def test_confirming_a_new_sign_up_lifts_a_web_suppression_but_never_a_bounce(site):
    site.confirmed("vera@example.org")
    site.form_post("/someone-has-died", "/someone-has-died", {"email": "vera@example.org"})
    stop = site.link_in(site.outbox()[-1], "/stop/")
    site.form_post(stop, stop, {})
    assert site.suppression("vera@example.org").source == "web"
    site.clock.advance(hours=2)
    site.clear_outbox()
    r = site.signup("vera@example.org")
    assert "We have sent an email to" in r.page
    confirm = site.link_in(site.outbox()[-1], "/confirm/")
    assert site.suppression("vera@example.org") is not None, "a sign-up alone lifted the suppression"
    site.form_post(confirm, confirm, {})
    assert site.suppression("vera@example.org") is None
    assert site.subscriber("vera@example.org").status == "confirmed"
    # A bounce is different: nothing a web visitor does lifts it.
    with site.engine.begin() as conn:
        repository.suppress(conn, email="walt@example.org", reason="bounce", at=T0, source="sendgrid")
    r = site.signup("walt@example.org")
    assert "We can't send email to this address" in r.page and site.subscriber("walt@example.org") is None


def test_someone_has_died_checks_the_address_and_is_rate_limited(site):
    bad = site.form_post("/someone-has-died", "/someone-has-died", {"email": "not an address"})
    assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text and "email-error" in bad.text
    for i in range(10):
        r = site.form_post("/someone-has-died", "/someone-has-died", {"email": f"p{i}@example.org"}, ip="198.51.100.3")
        assert r.status_code == 200
    r = site.form_post("/someone-has-died", "/someone-has-died", {"email": "p10@example.org"}, ip="198.51.100.3")
    assert r.status_code == 429 and site.outbox() == []


def test_download_my_data(site):
    prefs = site.confirmed("vic@example.org")
    row = site.subscriber("vic@example.org")
    with site.engine.begin() as conn:
        issue_id = conn.execute(insert(tables.issues).values(
            digest="weekly", fire_at=T0, period_start=T0 - timedelta(days=7), period_end=T0, planned_at=T0,
        ).returning(tables.issues.c.id)).scalar_one()
        conn.execute(insert(tables.deliveries).values(issue_id=issue_id, subscriber_id=row.id, state="sent",
                                                      variant="v1", sent_at=T0, attempts=1))
    page = site.get(prefs)
    data_url = page.text.split('href="/data/', 1)[1].split('"', 1)[0]
    r = site.get("/data/" + data_url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"] and r.headers["cache-control"] == "no-store"
    record = json.loads(r.text)["subscriber"]
    assert record["email"] == "vic@example.org" and record["status"] == "confirmed"
    assert record["consent_source"] == "web-double-opt-in" and record["consent_at"] == T0.isoformat()
    assert record["emails"] == [{"digest": "weekly", "issue": T0.isoformat(), "state": "sent",
                                 "sent_at": T0.isoformat()}]


def test_delete_my_data_then_old_links_are_kind(any_site):
    site = any_site
    prefs = site.confirmed("wyn@example.org")
    unsubscribe = _unsubscribe_url(site, "wyn@example.org")
    one_click = unsubscribe.replace("/unsubscribe/", "/u/")
    confirm_page = site.get(prefs + "/delete")
    assert confirm_page.status_code == 200 and "Delete your data?" in confirm_page.page
    wyn = site.subscriber("wyn@example.org")
    assert wyn is not None, "the confirmation page must not delete"
    r = site.post(prefs + "/delete", data={"csrf_token": csrf_of(confirm_page.text)})
    assert r.status_code == 200 and "Your data is deleted" in r.page
    assert site.subscriber("wyn@example.org") is None
    with site.engine.connect() as conn:  # not even their id in the change log the delete itself wrote to
        assert conn.execute(select(tables.subscriber_changes).where(tables.subscriber_changes.c.subscriber_id == wyn.id)).all() == []
    assert site.suppression("wyn@example.org") is None, "deleting data suppresses nothing"
    for url in (prefs, unsubscribe, one_click):
        page = site.get(url)
        assert page.status_code == 200 and "You're not subscribed" in page.page
    r = site.post(one_click, content=b"List-Unsubscribe=One-Click",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    # They may come back, and get a fresh confirmation.
    site.clear_outbox()
    site.signup("wyn@example.org")
    assert len(site.outbox()) == 1
