"""A subscriber's whole journey in a real browser against a real server, with axe-core on every page."""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from pipeline.store import tables

from .conftest import AXE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def check_page(page, what: str) -> None:
    """No WCAG 2.1 A/AA violations, and no sideways scrolling on a 320px-wide screen."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG)
    problems = [f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes: {v['nodes'][0]['target']})"
                for v in result["violations"]]
    assert problems == [], f"{what}: axe found {problems}"
    size = page.viewport_size
    page.set_viewport_size({"width": 320, "height": 700})
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{what}: scrolls sideways by {overflow}px at 320px wide"
    page.set_viewport_size(size)


def wait_for_mail(outbox: Path, count: int, timeout: float = 10) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if outbox.is_dir() else []
        if len(files) >= count or time.monotonic() > deadline:
            return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
        time.sleep(0.05)


def link(msg, server, path: str) -> str:
    text = msg.get_body(("plain",)).get_content()
    match = re.search(re.escape(server.url + path) + r"[A-Za-z0-9._\-]+", text)
    assert match, f"no {path} link in {msg['Subject']!r}"
    return match.group(0)


def subscriber(server, address: str):
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(tables.subscribers).where(tables.subscribers.c.email_key == address)).first()
    finally:
        engine.dispose()


def test_subscribe_confirm_digest_preferences_and_one_click_unsubscribe(server, page):
    address = "reader@example.org"

    # The home page from the feeds stage, and the gentle path for families.
    page.goto(server.url + "/")
    check_page(page, "index")
    page.goto(server.url + "/someone-has-died")
    check_page(page, "someone has died")

    # 1. Subscribe.
    page.goto(server.url + "/subscribe")
    assert page.locator("#topic-hospice-end-of-life").is_checked() is False
    assert page.locator("#topic-clinical-trials").is_checked() is True
    assert page.locator("#timezone").input_value() != "", "time zone detection or fallback"
    check_page(page, "subscribe")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Your first name (optional)").fill("Robin")
    page.get_by_label("Symptom management and supportive care").uncheck()
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Please check your inbox").wait_for()
    check_page(page, "check your inbox")
    assert subscriber(server, address).status == "pending"

    # 2. The confirmation email, read from the outbox.
    [confirmation] = wait_for_mail(server.outbox, 1)
    assert confirmation["To"] == address and "confirm" in confirmation["Subject"].lower()
    confirm_url = link(confirmation, server, "/confirm/")

    # 3. Open the link: one button, nothing changes until it is pressed.
    page.goto(confirm_url)
    check_page(page, "confirm")
    assert subscriber(server, address).status == "pending"
    page.get_by_role("button", name="Yes, send me the digest").click()
    page.get_by_role("heading", name="You're subscribed").wait_for()
    check_page(page, "confirmed")
    row = subscriber(server, address)
    assert row.status == "confirmed" and row.consent_source == "web-double-opt-in" and row.consent_at is not None
    assert "symptom-management" not in row.topics.split(";")

    # 4. The welcome email arrives.
    mails = wait_for_mail(server.outbox, 2)
    welcome = mails[-1]
    assert welcome["Subject"] == "Welcome to MBC Digest"
    preferences_url = link(welcome, server, "/preferences/")

    # 5. A digest is sent.
    # --force: this fixed issue time may still be ahead of the real clock.
    sent = server.pipeline("digest", "send", "weekly", "--at", "2026-12-07T13:00:00Z", "--force")
    assert sent.returncode == 0, sent.stderr
    mails = wait_for_mail(server.outbox, 3)
    digest = next(m for m in mails if m["List-Unsubscribe"])
    assert digest["To"] == address
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # 6. Change preferences.
    page.goto(preferences_url)
    check_page(page, "preferences")
    page.get_by_label("Hospice and end-of-life care").check()
    page.get_by_label("Once a month").check()
    page.get_by_role("button", name="Save my choices").click()
    page.get_by_text("Your choices are saved.").wait_for()
    check_page(page, "preferences saved")
    row = subscriber(server, address)
    assert row.cadence == "monthly" and "hospice-end-of-life" in row.topics.split(";")
    page.get_by_role("button", name="Pause for 4 weeks").click()
    page.get_by_text("Your emails are paused.").wait_for()
    assert subscriber(server, address).paused_until is not None
    page.get_by_role("button", name="Start my emails again now").click()
    page.get_by_text("Your emails will start again").wait_for()
    assert subscriber(server, address).paused_until is None

    # The unsubscribe page, as the footer link of every email opens it.
    page.get_by_role("link", name="Unsubscribe from the MBC Digest").click()
    page.get_by_role("heading", name="Stop getting the MBC Digest?").wait_for()
    check_page(page, "unsubscribe")
    assert subscriber(server, address).status == "confirmed", "opening the unsubscribe page must not unsubscribe"

    # A family member reports a death: nothing stops until the inbox's own button is pressed.
    page.goto(server.url + "/someone-has-died")
    page.get_by_label("Their email address").fill(address)
    page.get_by_role("button", name="Send the email that stops all email").click()
    page.get_by_role("heading", name="We've sent one email to that address").wait_for()
    check_page(page, "someone has died: sent")
    assert subscriber(server, address).status == "confirmed"
    stop = next(m for m in wait_for_mail(server.outbox, 4) if m["X-Pipeline-Kind"] == "stop")
    page.goto(link(stop, server, "/stop/"))
    page.get_by_role("heading", name="Stop all email to this address?").wait_for()
    check_page(page, "stop all email")
    assert subscriber(server, address).status == "confirmed", "opening the stop link must not stop anything"

    # 7. Leave with exactly the POST a mail provider sends to the List-Unsubscribe URL.
    one_click = re.search(r"<(https?://[^>]+)>", digest["List-Unsubscribe"]).group(1)
    assert one_click.startswith(server.url + "/u/")
    r = httpx.post(one_click, content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert subscriber(server, address).status == "unsubscribed"
