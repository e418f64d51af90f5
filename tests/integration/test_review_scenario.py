"""The issue's scenario through the CLI: an approved article edited afterwards keeps its approved text live, byte
for byte, in all three feeds, its page and the next digest (and its archive copy), until a reviewer approves the
edit; then the edit is live. Every SQL statement of the run is recorded: the editorial tables are only inserted to."""

from __future__ import annotations

import email
import json
import re
from datetime import timedelta
from email import policy
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipeline.cli import cli
from tests.support.project import AT, ROOT, make_project

SLUG = "bench-symptom-management"
SENTENCE = "A new unreviewed sentence: take twice the dose."
# The digest shows titles and summaries, so the edit reaches the summary too (a digest could otherwise not show it).
SUMMARY_TAIL = " Take twice the dose."
PASSWORD = "correct horse battery staple"


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def project(tmp_path, monkeypatch, db_url):
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    for var, value in {"PIPELINE_DATABASE_URL": db_url, "PIPELINE_SECRET_KEY": "test-secret-0123456789",
                       "PIPELINE_TEMPLATES_DIR": str(ROOT / "templates"), "PIPELINE_DELIVERY": "file",
                       "PIPELINE_SITE_URL": "http://127.0.0.1:8000"}.items():
        monkeypatch.setenv(var, value)
    for var in ("PIPELINE_CONTENT_DIR", "PIPELINE_PUBLIC_DIR", "PIPELINE_OUTBOX", "PIPELINE_REVIEW_MODE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def statements():
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def entry_contents(public: Path) -> dict[str, str]:
    """The article's content in each of the three site-wide feeds, as a reader's feed client parses it."""
    rss = feedparser.parse((public / "feeds" / "all.rss.xml").read_bytes())
    atom = feedparser.parse((public / "feeds" / "all.atom.xml").read_bytes())
    jf = json.loads((public / "feeds" / "all.json").read_bytes())
    assert not rss.bozo and not atom.bozo
    pick = {
        "rss": [e for e in rss.entries if e.link.endswith(f"/{SLUG}.html")],
        "atom": [e for e in atom.entries if e.link.endswith(f"/{SLUG}.html")],
        "json": [i for i in jf["items"] if i["url"].endswith(f"/{SLUG}.html")],
    }
    assert all(len(v) == 1 for v in pick.values()), pick
    return {"rss": "\n".join((pick["rss"][0].title, pick["rss"][0].summary, pick["rss"][0].content[0].value)),
            "atom": "\n".join((pick["atom"][0].title, pick["atom"][0].summary, pick["atom"][0].content[0].value)),
            "json": "\n".join((pick["json"][0]["title"], pick["json"][0]["summary"], pick["json"][0]["content_html"]))}


def page_body(public: Path) -> str:
    html = (public / "articles" / f"{SLUG}.html").read_text(encoding="utf-8")
    return html[html.index("<article>"):html.index("</article>")]


def digest_text(outbox: Path) -> str:
    files = sorted(outbox.rglob("*.eml"))
    assert len(files) == 1, files
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    return msg.get_body(("plain",)).get_content() + msg.get_body(("html",)).get_content()


def everything_public(public: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in public.rglob("*") if p.is_file() and p.suffix != ".css")


def test_an_edit_after_approval_reaches_nobody_until_a_reviewer_approves_it(project, statements):
    public = project / "public"
    before = (AT - timedelta(hours=6)).isoformat()
    assert run("feeds", "build", "--at", before).exit_code == 0
    approved_feeds, approved_page = entry_contents(public), page_body(public)
    assert all("Talk with your care team" in c for c in approved_feeds.values())

    path = project / "content" / f"{SLUG}.md"
    text = path.read_text(encoding="utf-8").rstrip("\n") + f"\n\n{SENTENCE}\n"
    summary = re.search(r'^summary: "(.*)"$', text, re.M).group(1)
    path.write_text(text.replace(summary, summary + SUMMARY_TAIL), encoding="utf-8")

    checked = run("check", "--at", (AT - timedelta(hours=5)).isoformat())
    assert checked.exit_code == 0, checked.output
    assert re.search(rf"content/{SLUG}\.md:1: review: warning: its newest text \(revision [0-9a-f]{{12}}\) waits "
                     "for review", checked.output), checked.output
    assert "0 errors" in checked.output

    assert run("feeds", "build", "--at", (AT - timedelta(hours=5)).isoformat()).exit_code == 0
    assert entry_contents(public) == approved_feeds
    assert page_body(public) == approved_page

    (project / "readers.csv").write_text("email,name,topics,cadence,timezone\n"
                                         "reader@example.org,,symptom-management,weekly,UTC\n", encoding="utf-8")
    assert run("subscribers", "import", "readers.csv", "--consented").exit_code == 0
    sent = run("digest", "send", "weekly", "--at", AT.isoformat())
    assert sent.exit_code == 0, sent.output
    mail = digest_text(project / "var" / "outbox")
    assert summary in mail
    assert "twice the dose" not in mail.lower()
    assert "twice the dose" not in everything_public(public).lower()  # feeds, pages and the digest archive copy

    # An editor (not a reviewer) cannot approve; a wrong password changes nothing; both are logged.
    assert run("staff", "add", "ed@example.org", "--name", "Eddie Editor", "--role", "editor", "--password-stdin",
               input=PASSWORD + "\n").exit_code == 0
    assert run("staff", "add", "ada@example.org", "--name", "Dr Ada Example", "--role", "reviewer",
               "--credentials", "MD, palliative medicine", "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    by_editor = run("content", "approve", SLUG, "--as", "ed@example.org", "--password-stdin", input=PASSWORD + "\n")
    assert by_editor.exit_code == 1 and "only a reviewer account can review" in by_editor.output
    wrong = run("content", "approve", SLUG, "--as", "ada@example.org", "--password-stdin", input="not the password\n")
    assert wrong.exit_code == 1 and "wrong password" in wrong.output
    assert run("feeds", "build", "--at", (AT + timedelta(hours=1)).isoformat()).exit_code == 0
    assert entry_contents(public) == approved_feeds

    approved = run("content", "approve", SLUG, "--as", "ada@example.org", "--password-stdin", "--note", "Dose checked",
                   "--at", (AT + timedelta(hours=2)).isoformat(), input=PASSWORD + "\n")
    assert approved.exit_code == 0, approved.output
    assert f"+{SENTENCE}" in approved.output  # the diff against the last approved text
    new_hash = re.search(r"revision ([0-9a-f]{64})", approved.output).group(1)

    assert run("feeds", "build", "--at", (AT + timedelta(hours=3)).isoformat()).exit_code == 0
    assert all(SENTENCE in c and SUMMARY_TAIL in c for c in entry_contents(public).values())
    page = page_body(public)
    assert SENTENCE in page
    assert "Reviewed by Dr Ada Example, MD, palliative medicine on" in page
    preview = project / "preview.html"
    assert run("digest", "preview", "weekly", "--at", AT.isoformat(), "--out", str(preview)).exit_code == 0
    assert summary + SUMMARY_TAIL in preview.read_text(encoding="utf-8")
    assert "Reviewed by Dr Ada Example, MD, palliative medicine on" in preview.read_text(encoding="utf-8")

    story = [json.loads(line) for line in run("audit", "--slug", SLUG, "--json").output.splitlines()]
    events = [(e["event"], e["revision"] == new_hash) for e in story]
    assert events[:4] == [("revision_created", False), ("attested", False), ("scheduled", False),
                          ("went_live", False)]
    assert events[4:] == [("revision_created", True), ("approval_refused", True), ("approval_refused", True),
                          ("approved", True), ("went_live", True)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", e["revision"]) for e in story)
    assert not any("@" in line for line in run("audit", "--json").output.splitlines())

    changing = [s for s in statements
                if re.match(r"\s*(UPDATE|DELETE\s+FROM|TRUNCATE)\s+\"?(audit_log|revisions|reviews)\b", s, re.I)]
    assert changing == []
    assert any(re.match(r"\s*INSERT INTO \"?audit_log", s, re.I) for s in statements)


def test_a_dry_run_and_a_preview_show_the_live_view_but_record_nothing(project, db_url):
    from sqlalchemy import func, select

    from pipeline.store.engine import make_engine
    from pipeline.store.tables import audit_log, revisions

    dry = run("digest", "send", "weekly", "--at", AT.isoformat(), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Articles in the period: 7;" in dry.output, dry.output
    preview = run("digest", "preview", "weekly", "--at", AT.isoformat(), "--out", str(project / "preview.html"))
    assert preview.exit_code == 0, preview.output
    assert "Benchmark article about" in (project / "preview.html").read_text(encoding="utf-8")

    def recorded() -> tuple[int, int]:
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                return (conn.execute(select(func.count()).select_from(revisions)).scalar(),
                        conn.execute(select(func.count()).select_from(audit_log)).scalar())
        finally:
            engine.dispose()

    assert recorded() == (0, 0)
    assert run("feeds", "build", "--at", AT.isoformat()).exit_code == 0
    assert recorded()[0] == 7
