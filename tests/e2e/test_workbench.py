"""The editors' journey in a real browser against a real server: an editor writes and submits, a reviewer signs
in with a one-time code and approves from the diff, a feed build publishes, an edit waits for its own review.
axe-core on every staff page, keyboard-only sign-in, no sideways scroll at 320 px, and screenshots."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from pipeline.editorial import totp

from .conftest import ROOT, free_port, new_server, serving
from .test_journey import check_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
EDITOR, REVIEWER, ADMIN = "edna@example.org", "rita@example.org", "ada@example.org"
SLUG = "resting-when-you-feel-tired"
SHOTS = Path(os.environ.get("PIPELINE_SCREENSHOTS", "/tmp/shots"))


@pytest.fixture
def staff_server(tmp_path):
    """``pipeline serve`` with a content/ of its own (the workbench writes it), in staff review mode."""
    content = tmp_path / "content"
    content.mkdir()
    shutil.copy(ROOT / "content" / "topics.yaml", content / "topics.yaml")
    port = free_port()
    srv = new_server(tmp_path, port, PIPELINE_CONTENT_DIR=str(content),
                     PIPELINE_SCHEDULES=str(ROOT / "schedules.yaml"), PIPELINE_REVIEW_MODE="staff")
    env = srv.env
    for email, name, role in ((EDITOR, "Edna Editor", "editor"), (REVIEWER, "Rita Reviewer", "reviewer"),
                              (ADMIN, "Ada Admin", "admin")):
        done = subprocess.run([sys.executable, "-m", "pipeline", "staff", "add", email, "--name", name, "--role", role,
                               "--password-stdin"], input=PASSWORD + "\n", cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    with serving(env, port, tmp_path / "server.log"):
        srv.content = content
        yield srv


def sign_in_by_keyboard(page, server, email: str) -> None:
    """Tab to each field and press Enter, as someone without a mouse would."""
    page.goto(server.url + "/staff/login")
    check_page(page, "login")
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_load_state()


def enrol(page) -> str:
    """First sign-in of a reviewer or admin: the QR code and the key, then a code from the authenticator."""
    page.get_by_role("heading", name="Set up your second factor").wait_for()
    assert page.locator("svg.qr").count() == 1
    check_page(page, "second factor enrolment")
    secret = page.locator("code.secret").first.inner_text().strip()
    page.get_by_label("6-digit code").fill(totp.code_at(secret, datetime.now(UTC)))
    page.get_by_role("button", name="Turn on and sign in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    return secret


def feed_text(server) -> str:
    built = server.pipeline("feeds", "build")
    assert built.returncode == 0, built.stderr
    parsed = feedparser.parse((server.public / "feeds" / "all.atom.xml").read_bytes())
    entry = next(e for e in parsed.entries if SLUG in e.link)
    return entry.content[0].value if "content" in entry else entry.summary


def test_editor_and_reviewer_take_an_article_to_the_feed_and_change_it(staff_server, browser):
    server = staff_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    editor_ctx = browser.new_context(bypass_csp=True, viewport={"width": 1024, "height": 800})
    reviewer_ctx = browser.new_context(bypass_csp=True, viewport={"width": 1024, "height": 800})
    page = editor_ctx.new_page()
    page.set_default_timeout(15000)

    # The editor writes a new article and submits it.
    sign_in_by_keyboard(page, server, EDITOR)
    page.get_by_role("heading", name="Dashboard").wait_for()
    check_page(page, "dashboard")
    page.get_by_role("link", name="Write a new article").click()
    check_page(page, "new article")
    page.get_by_label("Title", exact=True).fill("Resting when you feel tired")
    page.get_by_label("Summary", exact=True).fill("Short rests can help with tiredness. Here is how to plan them.")
    page.get_by_label("Symptom management and supportive care").check()
    page.get_by_label("Source 1 title").fill("Fatigue (PDQ), National Cancer Institute")
    page.get_by_label("Source 1 address").fill("https://www.cancer.gov/about-cancer/treatment/side-effects/fatigue")
    page.get_by_label("Publish time", exact=True).fill("2026-01-05T09:00")
    page.get_by_label("Body (Markdown)").fill("Tiredness is common with treatment. Short rests can help.\n\n"
                                              "Plan your day around the times you feel best.")
    page.get_by_role("button", name="Preview as readers will see it").click()
    page.get_by_text("Preview for staff").wait_for()
    assert page.locator("article h1").inner_text() == "Resting when you feel tired"
    page.go_back()
    page.get_by_role("button", name="Save and submit for review").click()
    page.get_by_text("Saved and submitted for review.").wait_for()
    check_page(page, "editor after saving")
    page.screenshot(path=str(SHOTS / "editor.png"), full_page=True)
    assert (server.content / f"{SLUG}.md").is_file()

    # The reviewer signs in with a one-time code, sees the diff and approves.
    rpage = reviewer_ctx.new_page()
    rpage.set_default_timeout(15000)
    sign_in_by_keyboard(rpage, server, REVIEWER)
    enrol(rpage)
    check_page(rpage, "reviewer dashboard")
    rpage.get_by_role("link", name="Resting when you feel tired").click()
    rpage.get_by_role("heading", name=re.compile("Review: Resting")).wait_for()
    assert "Edna Editor" in rpage.inner_text("dl.review")
    assert rpage.locator(".word-diff ins").count() >= 1
    check_page(rpage, "review")
    rpage.get_by_role("button", name="Approve this revision").click()
    rpage.get_by_role("heading", name="Approved").wait_for()

    # A feed build publishes it.
    assert "Short rests can help." in feed_text(server)

    # The editor changes a sentence; the feed keeps the approved text.
    page.goto(server.url + f"/staff/articles/{SLUG}/edit")
    page.get_by_label("Body (Markdown)").fill("Tiredness is common with treatment. A short rest of 20 minutes "
                                              "can help.\n\nPlan your day around the times you feel best.")
    page.get_by_role("button", name="Save and submit for review").click()
    page.get_by_text("Saved and submitted for review.").wait_for()
    page.goto(server.url + "/staff/")
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    text = feed_text(server)
    assert "Short rests can help." in text and "20 minutes" not in text

    # The reviewer sees exactly the changed words, and approves the change.
    rpage.goto(server.url + "/staff/")
    rpage.get_by_role("link", name="Resting when you feel tired").click()
    assert "20 minutes" in " ".join(rpage.locator(".word-diff ins").all_text_contents())
    assert "Short rests" in " ".join(rpage.locator(".word-diff del").all_text_contents())
    rpage.screenshot(path=str(SHOTS / "review-diff.png"), full_page=True)
    rpage.get_by_role("button", name="Approve this revision").click()
    rpage.get_by_role("heading", name="Approved").wait_for()
    text = feed_text(server)
    assert "20 minutes" in text and "Short rests can help." not in text

    # The next digest, previewed by the editor.
    page.goto(server.url + "/staff/digests")
    check_page(page, "digests")
    page.get_by_label("Symptom management and supportive care").first.check()
    page.get_by_role("button", name="Preview the next weekly issue").click()
    assert "Resting when you feel tired" in page.content()
    editor_ctx.close()
    reviewer_ctx.close()


def test_admin_and_inbox_pages_are_accessible(staff_server, page):
    server = staff_server
    sign_in_by_keyboard(page, server, ADMIN)
    secret = enrol(page)
    for path, heading in (("/staff/admin/accounts", "Staff accounts"), ("/staff/admin/audit", "Audit log"),
                          ("/staff/inbox", "Inbox"), ("/staff/digests", "Preview the next digest"),
                          ("/staff/articles/new", "New article"), ("/staff/no-such-page", "We can't find that page")):
        page.goto(server.url + path)
        page.get_by_role("heading", name=heading, exact=True).wait_for()
        check_page(page, path)
    page.goto(server.url + "/staff/admin/accounts")
    page.get_by_label("Email address").fill("nina@example.org")
    page.get_by_label("Name, as readers see it beside a review").fill("Nina Nurse")
    page.get_by_label("First password (at least 12 characters)").fill("short")
    page.get_by_role("button", name="Add the account").click()
    page.get_by_text("Please check the form").wait_for()
    check_page(page, "accounts with an error")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="You have signed out").wait_for()
    check_page(page, "signed out")
    # The next sign-in asks for a code; a wrong one is explained.
    sign_in_by_keyboard(page, server, ADMIN)
    page.get_by_role("heading", name="Type your one-time code").wait_for()
    check_page(page, "one-time code")
    page.get_by_label("6-digit code").fill("000000")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That code didn't work.").wait_for()
    check_page(page, "wrong code")
    page.get_by_label("6-digit code").fill(totp.code_at(secret, datetime.now(UTC)))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def test_a_conflict_is_shown_accessibly_and_the_preview_too(staff_server, browser):
    """The same editor on two devices: the second save is told, and shown both texts."""
    server = staff_server
    first_ctx = browser.new_context(bypass_csp=True, viewport={"width": 1024, "height": 800})
    second_ctx = browser.new_context(bypass_csp=True, viewport={"width": 1024, "height": 800})
    first, second = first_ctx.new_page(), second_ctx.new_page()
    for p in (first, second):
        p.set_default_timeout(15000)
        sign_in_by_keyboard(p, server, EDITOR)
    first.goto(server.url + "/staff/articles/new")
    first.get_by_label("Title", exact=True).fill("Resting when you feel tired")
    first.get_by_label("Summary", exact=True).fill("Short rests can help with tiredness.")
    first.get_by_label("Symptom management and supportive care").check()
    first.get_by_label("Body (Markdown)").fill("Short rests can help.")
    first.get_by_role("button", name="Preview as readers will see it").click()
    first.get_by_text("Preview for staff").wait_for()
    check_page(first, "preview")
    first.go_back()
    first.get_by_role("button", name="Save draft").click()
    first.get_by_text("Saved.").wait_for()
    second.goto(server.url + f"/staff/articles/{SLUG}/edit")
    first.get_by_label("Body (Markdown)").fill("Short rests can help. The first device's sentence.")
    first.get_by_role("button", name="Save draft").click()
    first.get_by_text("Saved.").wait_for()
    second.get_by_label("Body (Markdown)").fill("Short rests can help. The second device's sentence.")
    second.get_by_role("button", name="Save draft").click()
    second.get_by_role("heading", name="Someone else saved this article while you were editing").wait_for()
    assert "The first device's sentence." in second.inner_text("section.conflict")
    assert "The second device's sentence." in second.get_by_label("Body (Markdown)").input_value()
    check_page(second, "conflict")
    assert "first device" in (server.content / f"{SLUG}.md").read_text()
    first_ctx.close()
    second_ctx.close()
