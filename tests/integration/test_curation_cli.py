"""The curation inbox from the command line, with the loopback feed server as the outside world: fetch, list,
promote, the editor's and reviewer's work, then the item in the feeds (read with feedparser) and in the next
digest (parsed MIME) with its origin and both links."""

from __future__ import annotations

import json
import re
import shutil
from email import policy
from email.parser import BytesParser
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.support.feed_server import FeedServer

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL = "https://news.example.org/press/new-option-mbc?utm_source=rss&utm_medium=feed"
OUR_PAGE = "https://digest.example.org/articles/new-option-for-mbc.html"


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


@pytest.fixture
def project(tmp_path, monkeypatch, server):
    """A project of our own (real topics, no articles) whose sources.yaml watches the loopback server."""
    content = tmp_path / "content"
    content.mkdir()
    shutil.copy(ROOT / "content" / "topics.yaml", content / "topics.yaml")
    shutil.copy(ROOT / "schedules.yaml", tmp_path / "schedules.yaml")
    (content / "sources.yaml").write_text(f"""sources:
  - id: press
    name: "Example Agency: press releases"
    origin: "the Example Agency"
    url: "{server.url('/fda-press.rss.xml')}"
    topics: [treatment-progress]
    keywords: [breast cancer]
  - id: blog
    name: "Example research blog"
    url: "{server.url('/nci-currents.atom.xml')}"
    topics: [treatment-progress, quality-of-life]
  - id: trials
    name: "Example trial registry"
    url: "{server.url('/trials.rdf.xml')}"
    topics: [clinical-trials]
""", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for var, value in {"PIPELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'pipeline.db'}",
                       "PIPELINE_CONTENT_DIR": "content", "PIPELINE_SCHEDULES": "schedules.yaml",
                       "PIPELINE_PUBLIC_DIR": str(tmp_path / "public"), "PIPELINE_OUTBOX": str(tmp_path / "outbox"),
                       "PIPELINE_DELIVERY": "file", "PIPELINE_TEMPLATES_DIR": str(ROOT / "templates"),
                       "PIPELINE_SITE_URL": "https://digest.example.org", "PIPELINE_VAR_DIR": str(tmp_path / "var"),
                       "PIPELINE_SECRET_KEY": "test-secret-key-do-not-use-0123456789",
                       "PIPELINE_FETCH_ALLOW_PRIVATE": "1"}.items():
        monkeypatch.setenv(var, value)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def inbox_json() -> list[dict]:
    result = run("inbox", "list", "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_a_watched_item_goes_from_the_inbox_to_feeds_and_the_next_digest(project, server):
    fetched = run("sources", "fetch", "--at", "2026-11-19T12:00:00Z")
    assert fetched.exit_code == 0, fetched.output
    assert "3 sources: 3 new candidates, 0 failed" in fetched.output
    items = inbox_json()
    assert {tuple(i["sources"]) for i in items} == {("press", "blog"), ("blog",), ("trials",)}
    story = next(i for i in items if i["sources"] == ["press", "blog"])
    assert set(story) >= {"id", "title", "url", "sources", "published"} and story["url"] == ORIGINAL
    assert story["published"] == "2026-11-18T15:30:00+00:00"

    promoted = run("inbox", "promote", str(story["id"]), "--slug", "new-option-for-mbc", "--at", "2026-11-19T12:00:00Z")
    assert promoted.exit_code == 0, promoted.output
    path = project / "content" / "new-option-for-mbc.md"
    text = path.read_text(encoding="utf-8")
    fields = [line for line in text.split("---\n")[1].splitlines() if not line.startswith("#")]
    assert 'title: ""' in fields and 'summary: ""' in fields and "status: draft" in fields
    assert f'link: "{ORIGINAL}"' in fields and 'origin: "the Example Agency"' in fields
    assert fields[fields.index("sources:") + 2] == f'    url: "{ORIGINAL}"'
    # The outside title is there for reference, in a comment, and nowhere else.
    assert text.count(story["title"]) == 1
    assert any(line.startswith("#   Outside title: " + story["title"]) for line in text.splitlines())
    assert story["id"] not in [i["id"] for i in inbox_json()]
    again = run("inbox", "promote", str(story["id"]), "--slug", "another-slug")
    assert again.exit_code == 1 and "already promoted to content/new-option-for-mbc.md" in again.output

    checked = run("check", "--at", "2026-11-19T12:00:00Z")
    assert checked.exit_code == 1
    assert re.search(r"content/new-option-for-mbc\.md:\d+: title: is still to write: our own plain-language title",
                     checked.output), checked.output
    assert re.search(r"content/new-option-for-mbc\.md:\d+: summary: is still to write", checked.output)
    refused = run("content", "queue", "new-option-for-mbc", "--at", "2026-11-19T09:00:00-05:00")
    assert refused.exit_code == 1

    # The editor writes our own words; the medical reviewer signs the review.
    text = text.replace('title: ""', 'title: "A new treatment choice for some people with MBC"', 1)
    text = text.replace('summary: ""', 'summary: "A new medicine was approved. Ask your care team if it fits you."', 1)
    text = text.replace("reviewed_by:\n", 'reviewed_by: "Test Reviewer, MD"\n', 1)
    text = text.replace("reviewed_on:\n", "reviewed_on: 2026-11-19\n", 1)
    path.write_text(text, encoding="utf-8")
    tips_left = run("content", "queue", "new-option-for-mbc", "--at", "2026-11-19T09:00:00-05:00")
    assert tips_left.exit_code == 1 and "placeholder body" in tips_left.output, tips_left.output
    front, _, _tips = text.rpartition("---\n")
    text = front + "---\n\nA new medicine was approved for some people with MBC. Ask your care team if it fits you.\n"
    path.write_text(text, encoding="utf-8")
    queued = run("content", "queue", "new-option-for-mbc", "--at", "2026-11-19T09:00:00-05:00")
    assert queued.exit_code == 0, queued.output

    built = run("feeds", "build", "--at", "2026-11-20T12:00:00Z")
    assert built.exit_code == 0, built.output
    feeds = project / "public" / "feeds"
    for name in ("all.rss.xml", "all.atom.xml", "treatment-progress.rss.xml", "treatment-progress.atom.xml"):
        parsed = feedparser.parse(io_bytes(feeds / name))
        assert parsed.bozo == 0, name
        (entry,) = [e for e in parsed.entries if e.link.endswith("/articles/new-option-for-mbc.html")]
        assert entry.link == OUR_PAGE and entry.title == "A new treatment choice for some people with MBC"
        content = entry.content[0].value
        assert "From the Example Agency." in content and f'href="{ORIGINAL}"' in content.replace("&amp;", "&"), content
    data = json.loads((feeds / "all.json").read_text(encoding="utf-8"))
    (item,) = [i for i in data["items"] if i["url"].endswith("/articles/new-option-for-mbc.html")]
    assert item["url"] == OUR_PAGE and item["external_url"] == ORIGINAL
    page = (project / "public" / "articles" / "new-option-for-mbc.html").read_text(encoding="utf-8")
    assert "From the Example Agency." in page

    (project / "subs.csv").write_text("email,name,topics,cadence,timezone\nann@example.org,Ann,treatment-progress,weekly,UTC\n")
    assert run("subscribers", "import", "subs.csv", "--consented").exit_code == 0
    sent = run("digest", "send", "weekly", "--at", "2026-11-23T14:00:00Z")
    assert sent.exit_code == 0, sent.output
    (eml,) = sorted((project / "outbox").glob("*.eml"))
    message = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    html = message.get_body(("html",)).get_content()
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "A new treatment choice for some people with MBC" in html
    assert re.search(f'href="{re.escape(OUR_PAGE)}"[^>]*>A new treatment choice', html)
    assert re.search(f'From the Example Agency. <a href="{re.escape(ORIGINAL.replace("&", "&amp;"))}"[^>]*>Read the original</a>', html), html
    assert f"From the Example Agency. Read the original:\n{ORIGINAL}\n" in plain and f"{OUR_PAGE}\n" in plain


def io_bytes(path: Path):
    import io

    return io.BytesIO(path.read_bytes())


def test_dismissed_items_leave_the_inbox_and_do_not_come_back(project, server):
    assert run("sources", "fetch").exit_code == 0
    first = inbox_json()[0]
    result = run("inbox", "dismiss", str(first["id"]))
    assert result.exit_code == 0 and result.output.strip() == f"dismissed {first['id']}"
    server.files = {k: v.replace(b"<item>", b"<item> ") for k, v in server.files.items()}  # new ETags, same stories
    assert run("sources", "fetch", "--now").exit_code == 0
    assert first["id"] not in [i["id"] for i in inbox_json()] and len(inbox_json()) == 2
    listed = run("inbox", "list", "--all").output
    assert "(dismissed)" in listed
    missing = run("inbox", "dismiss", "999")
    assert missing.exit_code == 1 and "no candidate 999" in missing.output and "Traceback" not in missing.output


def test_without_allow_private_the_loopback_server_is_refused(project, server, monkeypatch):
    monkeypatch.delenv("PIPELINE_FETCH_ALLOW_PRIVATE")
    result = run("sources", "fetch", "press")
    assert result.exit_code == 1
    assert "press: failed: refused: 127.0.0.1 is a loopback address" in result.output
    assert server.hits["/fda-press.rss.xml"] == 0
    listed = run("sources", "list").output
    assert "last error (1 in a row): refused:" in listed


def test_check_reports_sources_yaml_problems_by_line_and_field(project):
    (project / "content" / "sources.yaml").write_text("""sources:
  - id: good-one
    name: "Fine"
    url: "https://feeds.example.org/rss.xml"
    topics: [treatment-progress]
  - id: Bad Id
    name: "x"
    url: "https://feeds.example.org/2"
    topics: [treatment-progress]
  - id: no-url
    name: "No address"
    url: "ftp://feeds.example.org/feed"
    topics: [not-a-topic]
    keywords: "not a list"
    colour: blue
""")
    result = run("check")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    for expected in ("content/sources.yaml:6: sources[1].id: is required",
                     "content/sources.yaml:12: sources.no-url.url: must be the feed's address",
                     "content/sources.yaml:13: sources.no-url.topics: unknown topic ids not-a-topic",
                     "content/sources.yaml:14: sources.no-url.keywords: must be a list",
                     "content/sources.yaml:15: sources[2].colour: is not a known field"):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    (project / "content" / "sources.yaml").unlink()
    assert run("check").exit_code == 0


def test_the_scheduled_task_fetches_into_the_inbox(project, server):
    from pipeline.scheduling.tasks import run_task

    schedules = project / "schedules.yaml"
    schedules.write_text(schedules.read_text() + '  - {id: sources, task: fetch-sources, cron: "0 * * * *", misfire_grace: 30m}\n')
    assert run("check").exit_code == 0
    run_task("sources")
    assert len(inbox_json()) == 3
    assert server.hits["/trials.rdf.xml"] == 1
