"""Staff accounts, reviews and the review modes, against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from pipeline.cli import cli
from pipeline.content.loader import parse_article
from pipeline.editorial import audit, record, review, staff, totp
from pipeline.editorial.canonical import revision_of
from pipeline.editorial.live import live_articles
from pipeline.store.engine import make_engine
from pipeline.store.tables import audit_log, reviews
from pipeline.store.tables import staff as staff_table
from tests.support.project import AT, ROOT, make_project

PASSWORD = "correct horse battery staple"
TOPICS = frozenset({"symptom-management"})


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def engine(db_url):
    e = make_engine(db_url)
    yield e
    e.dispose()


def article(body: str = "Rest when you need to.", *, status: str = "approved", reviewed_on: str = "2026-10-01",
            slug: str = "resting-well", publish_at: str = "2026-10-05T09:00:00+00:00"):
    text_ = f"""---
title: "Resting well"
summary: "Rest helps with tiredness."
topics: [symptom-management]
status: {status}
publish_at: {publish_at}
reviewed_by: "Dr Cy Example, oncologist"
reviewed_on: {reviewed_on}
sources:
  - title: "Fatigue, Example Org"
    url: "https://example.org/fatigue"
---
{body}
"""
    a, problems = parse_article(text_, slug=slug, path=f"content/{slug}.md", topic_ids=TOPICS)
    assert a is not None, problems
    return a


def sync(engine, *articles, mode="attested", at=AT, author=None):
    with engine.begin() as conn:
        return record.sync_files(conn, list(articles), present={a.slug for a in articles}, at=at, mode=mode,
                                 author=author)


def live(engine, mode="attested", at=AT):
    with engine.connect() as conn:
        return {a.slug: a for a in live_articles(conn, at=at, mode=mode) if a.publish_at <= at}


def add_account(engine, email, role, **kw):
    with engine.begin() as conn:
        return staff.add(conn, email=email, name=kw.pop("name", "Dr Ada Example"), role=role,
                         credentials=kw.pop("credentials", "MD"), password=PASSWORD, at=AT, **kw)


def approve(engine, slug, rev_hash, email, password=PASSWORD, code=None, verdict="approved"):
    return review.decide(engine, slug=slug, revision_hash=rev_hash, verdict=verdict, email=email, password=password,
                         code=code, note="", at=AT + timedelta(hours=1))


def counts(engine):
    with engine.connect() as conn:
        return (conn.execute(select(reviews.c.id)).all().__len__(), conn.execute(select(audit_log.c.id)).all().__len__())


# ----- attested mode: a front-matter review counts once, for the text it was first seen with -------------------

def test_attestation_covers_exactly_the_text_first_seen_with_it(engine):
    first = article()
    report = sync(engine, first)
    assert report.attested == ["resting-well"] and report.waiting == []
    assert live(engine)["resting-well"].body == "Rest when you need to."

    edited = article("Rest when you need to. Take twice the dose.")
    report = sync(engine, edited)
    assert report.attested == [] and [w[0] for w in report.waiting] == ["resting-well"]
    assert live(engine)["resting-well"].body == "Rest when you need to."

    reattested = article("Rest when you need to. Take twice the dose.", reviewed_on="2026-11-20")
    assert sync(engine, reattested).attested == ["resting-well"]
    shown = live(engine)["resting-well"]
    assert shown.body == "Rest when you need to. Take twice the dose." and shown.reviewed_on == date(2026, 11, 20)
    with engine.connect() as conn:
        events = [e.event for e in audit.entries(conn, slug="resting-well")]
    assert events == ["revision_created", "attested", "scheduled", "revision_created", "attested"]


def test_an_edit_after_a_staff_approval_is_never_attested_by_the_review_fields_queue_wrote(engine):
    """In attested mode: a reviewer approves a draft, `content queue` writes their name and date into the front
    matter, and then someone edits the text by hand. Those review fields describe the approved text, not the edit:
    the edit waits, and the approved text stays live."""
    add_account(engine, "ada@example.org", "reviewer")
    draft = article(status="review", reviewed_on="2026-10-01")
    sync(engine, draft)
    approve(engine, "resting-well", revision_of(draft).hash, "ada@example.org")
    queued = article(reviewed_on=(AT + timedelta(hours=1)).date().isoformat())
    assert sync(engine, queued).attested == []  # the staff approval already covers this text
    assert live(engine)["resting-well"].body == "Rest when you need to."

    edited = article("Rest when you need to. Take twice the dose.",
                     reviewed_on=(AT + timedelta(hours=1)).date().isoformat())
    report = sync(engine, edited)
    assert report.attested == [] and [w[0] for w in report.waiting] == ["resting-well"]
    assert live(engine)["resting-well"].body == "Rest when you need to."


def test_staff_mode_counts_only_reviewer_accounts_and_check_lists_attestation_only_articles(engine, tmp_path,
                                                                                             monkeypatch, db_url):
    a = article()
    sync(engine, a, mode="staff")
    assert live(engine, mode="staff") == {} and "resting-well" in live(engine, mode="attested")
    add_account(engine, "ada@example.org", "reviewer")
    approve(engine, "resting-well", revision_of(a).hash, "ada@example.org")
    shown = live(engine, mode="staff")["resting-well"]
    assert shown.reviewed_by == "Dr Ada Example, MD" and shown.reviewed_on == (AT + timedelta(hours=1)).date()

    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_DATABASE_URL", db_url)
    monkeypatch.setenv("PIPELINE_TEMPLATES_DIR", str(ROOT / "templates"))
    monkeypatch.setenv("PIPELINE_REVIEW_MODE", "staff")
    assert run("content", "import", "--at", AT.isoformat()).exit_code == 0
    checked = run("check", "--at", AT.isoformat())
    assert checked.exit_code == 0
    listed = [line for line in checked.output.splitlines() if "has only a front-matter attestation" in line]
    assert len(listed) == len(list((tmp_path / "content").glob("bench-*.md"))) > 0
    assert run("feeds", "build", "--at", AT.isoformat()).output.startswith("0 live articles")


def test_retraction_wins_over_every_approved_revision(engine):
    a = article()
    sync(engine, a)
    retracted = article(status="retracted")
    assert sync(engine, retracted).retracted == ["resting-well"]
    assert live(engine) == {}
    assert sync(engine, a).scheduled == ["resting-well"]  # approved again: back, with its approved text
    assert "resting-well" in live(engine)
    assert sync(engine).retracted == ["resting-well"]  # the file is gone
    assert live(engine) == {}


# ----- staff reviews: who may approve, and what a refusal leaves behind --------------------------------------

def test_a_reviewer_cannot_approve_a_revision_it_wrote(engine):
    author = add_account(engine, "ada@example.org", "reviewer")
    a = article(status="review")
    sync(engine, a, author=author.actor)
    before = counts(engine)
    with pytest.raises(review.ReviewRefused, match="written by the same account"):
        approve(engine, "resting-well", revision_of(a).hash, "ada@example.org")
    assert counts(engine) == (before[0], before[1] + 1)
    with engine.connect() as conn:
        last = audit.entries(conn, events=("approval_refused",))[-1]
    assert (last.actor, last.revision, last.detail["reason"]) == (author.actor, revision_of(a).hash,
                                                                  "this revision was written by the same account; "
                                                                  "another reviewer must review it")
    add_account(engine, "bo@example.org", "reviewer", name="Dr Bo Example")
    approve(engine, "resting-well", revision_of(a).hash, "bo@example.org")
    assert counts(engine)[0] == before[0] + 1


@pytest.mark.parametrize("role", ["editor", "admin"])
def test_only_a_reviewer_account_can_approve(engine, role):
    add_account(engine, "ed@example.org", role)
    a = article(status="review")
    sync(engine, a)
    before = counts(engine)
    with pytest.raises(review.ReviewRefused, match=f"role is {role}"):
        approve(engine, "resting-well", revision_of(a).hash, "ed@example.org")
    assert counts(engine) == (before[0], before[1] + 1)
    assert live(engine) == {}


@pytest.mark.parametrize("who,password,reason", [
    ("ada@example.org", "not the right password", "wrong password"),
    ("nobody@example.org", PASSWORD, "no such staff account"),
])
def test_a_failed_proof_changes_nothing_and_is_logged_without_the_address(engine, who, password, reason):
    add_account(engine, "ada@example.org", "reviewer")
    a = article(status="review")
    sync(engine, a)
    before = counts(engine)
    with pytest.raises(review.ReviewRefused, match=reason):
        approve(engine, "resting-well", revision_of(a).hash, who, password=password)
    assert counts(engine) == (before[0], before[1] + 1)
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log)).all()
    assert rows[-1].event == "approval_refused" and reason in rows[-1].detail
    assert not any("@" in str(v) for row in rows for v in row)


def test_a_disabled_account_cannot_approve(engine):
    add_account(engine, "ada@example.org", "reviewer")
    with engine.begin() as conn:
        assert staff.disable(conn, "ada@example.org", at=AT)
    a = article(status="review")
    sync(engine, a)
    with pytest.raises(review.ReviewRefused, match="disabled"):
        approve(engine, "resting-well", revision_of(a).hash, "ada@example.org")


def test_a_second_factor_needs_the_current_code(engine):
    add_account(engine, "ada@example.org", "reviewer")
    secret = totp.new_secret()
    with engine.begin() as conn:
        staff.set_totp(conn, "ada@example.org", secret, at=AT)
    a = article(status="review")
    sync(engine, a)
    with pytest.raises(review.ReviewRefused, match="one-time code"):
        approve(engine, "resting-well", revision_of(a).hash, "ada@example.org", code=None)
    with pytest.raises(review.ReviewRefused, match="one-time code"):
        approve(engine, "resting-well", revision_of(a).hash, "ada@example.org",
                code=totp.code_at(secret, AT - timedelta(hours=1)))
    approve(engine, "resting-well", revision_of(a).hash, "ada@example.org",
            code=totp.code_at(secret, AT + timedelta(hours=1)))


def test_an_approval_refuses_the_templates_placeholders(engine):
    add_account(engine, "ada@example.org", "reviewer")
    text_ = (ROOT / "pipeline" / "content" / "editor.py").read_text()  # the template itself, filled in
    from pipeline.content.editor import NEW_TEMPLATE
    from pipeline.content.placeholders import BODY_LINES, SOURCE_TITLE, SOURCE_URL, SUMMARY
    assert "NEW_TEMPLATE" in text_
    draft = NEW_TEMPLATE.format(title="Resting well", topics="symptom-management", author="", summary=SUMMARY,
                                publish_at="2026-10-05T09:00:00+00:00", source_title=SOURCE_TITLE,
                                source_url=SOURCE_URL, body_first=BODY_LINES[0], body_second=BODY_LINES[1])
    a, problems = parse_article(draft, slug="resting-well", path="content/resting-well.md", topic_ids=TOPICS)
    assert a is not None and {p.field for p in problems if p.severity == "warning"} >= {"summary"}
    sync(engine, a)
    with pytest.raises(review.ReviewRefused, match="placeholder summary"):
        approve(engine, "resting-well", revision_of(a).hash, "ada@example.org")


def test_a_password_hashed_with_old_parameters_is_rehashed_on_success(engine):
    account = add_account(engine, "ada@example.org", "reviewer")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(staff_table.update().where(staff_table.c.id == account.id).values(password_hash=weak))
        staff.authenticate(conn, "ada@example.org", PASSWORD, code=None, at=AT)
        stored = conn.execute(select(staff_table.c.password_hash).where(staff_table.c.id == account.id)).scalar_one()
    assert stored != weak and stored.startswith("$argon2id$") and "m=8," not in stored


# ----- the audit log and revisions cannot be changed on PostgreSQL -------------------------------------------

@pytest.mark.parametrize("table,statement", [
    ("audit_log", "UPDATE audit_log SET actor = 'someone else'"),
    ("audit_log", "DELETE FROM audit_log"),
    ("audit_log", "TRUNCATE audit_log"),
    ("revisions", "UPDATE revisions SET text = '{}'"),
    ("reviews", "DELETE FROM reviews"),
])
def test_the_database_refuses_to_change_the_record(engine, db_url, table, statement):
    if engine.dialect.name != "postgresql" and statement.startswith("TRUNCATE"):
        pytest.skip("SQLite has no TRUNCATE")
    a = article()
    sync(engine, a)
    with engine.connect() as conn:
        before = conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
    assert before
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all() == before
    with engine.begin() as conn:  # inserting is still allowed
        audit.append(conn, "submitted", actor="operator", at=AT, slug="resting-well")


# ----- staff commands: clear errors -----------------------------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path, monkeypatch, db_url):
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_DATABASE_URL", db_url)
    monkeypatch.setenv("PIPELINE_TEMPLATES_DIR", str(ROOT / "templates"))
    monkeypatch.delenv("PIPELINE_REVIEW_MODE", raising=False)
    return tmp_path


@pytest.mark.parametrize("args,password,message", [
    (["--role", "surgeon"], PASSWORD, "--role: 'surgeon' is not a role; use one of: editor, reviewer, admin"),
    (["--role", "reviewer"], "short pass", "password: is 10 characters long; use at least 12"),
    (["--role", "reviewer"], "", "password: is 0 characters long"),
])
def test_a_bad_staff_command_gets_a_clear_error(cli_env, args, password, message):
    result = run("staff", "add", "ada@example.org", "--name", "Dr Ada Example", *args, "--password-stdin",
                 input=password + "\n")
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert "no staff accounts yet" in run("staff", "list").output


def test_staff_accounts_through_the_cli(cli_env):
    add = ["staff", "add", "Ada@Example.org", "--name", "Dr Ada Example", "--role", "reviewer", "--credentials",
           "MD, medical oncology", "--password-stdin"]
    assert run(*add, input=PASSWORD + "\n").exit_code == 0
    again = run(*add[:2], "ada@example.org", *add[3:], input=PASSWORD + "\n")
    assert again.exit_code == 1 and "already exists" in again.output
    assert "reviewer  Ada@Example.org" in run("staff", "list").output
    assert "Dr Ada Example, MD, medical oncology" in run("staff", "list").output
    weak = run("staff", "set-password", "ada@example.org", "--password-stdin", input="too short\n")
    assert weak.exit_code == 1 and "at least 12" in weak.output
    assert run("staff", "set-password", "ada@example.org", "--password-stdin",
               input="another long passphrase\n").exit_code == 0
    assert run("staff", "disable", "ada@example.org").output.strip() == "disabled"
    assert "(disabled)" in run("staff", "list").output
    missing = run("staff", "disable", "nobody@example.org")
    assert missing.exit_code == 1 and "no staff account" in missing.output
    events = [line.split()[1] for line in run("audit").output.splitlines()]
    assert events == ["staff_added", "staff_changed", "staff_disabled"]


def test_queue_in_staff_mode_needs_a_reviewers_approval_and_records_it(cli_env, monkeypatch):
    monkeypatch.setenv("PIPELINE_REVIEW_MODE", "staff")
    slug = "bench-quality-of-life"
    path = cli_env / "content" / f"{slug}.md"
    path.write_text(path.read_text().replace("status: approved", "status: review"))
    refused = run("content", "queue", slug, "--at", "2026-11-20T09:00:00Z")
    assert refused.exit_code == 1 and "no reviewer has approved its current text" in refused.output
    assert run("staff", "add", "ada@example.org", "--name", "Dr Ada Example", "--role", "reviewer", "--credentials",
               "MD", "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    assert run("content", "approve", slug, "--as", "ada@example.org", "--password-stdin", "--at",
               "2026-11-19T09:00:00Z", input=PASSWORD + "\n").exit_code == 0
    queued = run("content", "queue", slug, "--at", "2026-11-20T09:00:00Z")
    assert queued.exit_code == 0, queued.output
    assert 'reviewed_by: "Dr Ada Example, MD"' in path.read_text() and "reviewed_on: 2026-11-19" in path.read_text()
    built = run("feeds", "build", "--at", AT.isoformat())
    assert built.output.startswith("1 live articles")
    assert "Reviewed by Dr Ada Example, MD on" in (cli_env / "public" / "articles" / f"{slug}.html").read_text()


def test_review_due_lists_live_articles_and_marks_overdue_pages(cli_env):
    later = datetime(2027, 10, 7, tzinfo=UTC).isoformat()  # reviewed 2026-11-01: due 2027-11-01, 25 days on
    listed = run("content", "list", "--review-due", "30d", "--at", later).output.splitlines()
    assert len(listed) == len(list((cli_env / "content").glob("bench-*.md")))
    assert all(line.startswith("due      2027-11-01  bench-") for line in listed)
    assert run("content", "list", "--review-due", "20d", "--at", later).output == ""
    bad = run("content", "list", "--review-due", "soon")
    assert bad.exit_code == 1 and "--review-due: 'soon' is not a number of days" in bad.output
    overdue_at = datetime(2027, 11, 3, tzinfo=UTC).isoformat()
    assert run("content", "list", "--review-due", "0d", "--at", overdue_at).output.startswith("overdue  2027-11-01")
    assert run("feeds", "build", "--at", overdue_at).exit_code == 0
    page = (cli_env / "public" / "articles" / "bench-clinical-trials.html").read_text()
    assert "Review overdue" in page and "November 1, 2027" in page


def test_check_warns_of_placeholders_only_for_a_real_site(cli_env, monkeypatch):
    path = cli_env / "content" / "bench-clinical-trials.md"
    path.write_text(path.read_text().replace('"Sample Reviewer, MD"',
                                             '"Sample Reviewer, MD (placeholder: replace with your medical reviewer)"'))
    local = run("check", "--at", AT.isoformat())
    assert local.exit_code == 0 and "placeholder" not in local.output
    monkeypatch.setenv("PIPELINE_SITE_URL", "https://digest.example.org")
    real = run("check", "--at", AT.isoformat())
    assert real.exit_code == 0
    assert "content/bench-clinical-trials.md:1: reviewed_by: warning: " in real.output
    assert "PIPELINE_POSTAL_ADDRESS:1: postal_address: warning: is the example address" in real.output
    monkeypatch.setenv("PIPELINE_POSTAL_ADDRESS", "MBC Digest, 1 Real Road, Real Town, RT 12345, USA")
    assert "postal_address" not in run("check", "--at", AT.isoformat()).output


def test_following_the_editor_guide_literally_cannot_publish_the_template(cli_env):
    created = run("content", "new", "--title", "Sleeping better", "--topics", "symptom-management", "--at",
                  "2026-11-20T09:00:00Z")
    assert created.exit_code == 0
    path = cli_env / "content" / "sleeping-better.md"
    path.write_text(path.read_text().replace("reviewed_by:", 'reviewed_by: "Dr Cy Example, oncologist"')
                    .replace("reviewed_on:", "reviewed_on: 2026-11-19"))
    queued = run("content", "queue", "sleeping-better", "--at", "2026-11-20T09:00:00Z")
    assert queued.exit_code == 1 and "placeholder" in queued.output
    draft_check = run("check", "--at", AT.isoformat())
    assert draft_check.exit_code == 0 and "sleeping-better.md" in draft_check.output
    path.write_text(path.read_text().replace("status: draft", "status: approved"))
    approved_check = run("check", "--at", AT.isoformat())
    assert approved_check.exit_code == 1
    assert "content/sleeping-better.md:3: summary: still holds the template's placeholder" in approved_check.output
    assert run("feeds", "build", "--at", AT.isoformat()).exit_code == 0
    assert not (cli_env / "public" / "articles" / "sleeping-better.html").exists()
    assert "replace-with-the-source" not in Path(cli_env / "public" / "feeds" / "all.json").read_text()


def test_approve_reads_the_one_time_code_from_the_next_stdin_line(cli_env, db_url):
    slug = "bench-palliative-care"
    path = cli_env / "content" / f"{slug}.md"
    path.write_text(path.read_text() + "\nOne more plain sentence.\n")
    assert run("staff", "add", "ada@example.org", "--name", "Dr Ada Example", "--role", "reviewer",
               "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    secret = totp.new_secret()
    e = make_engine(db_url)
    with e.begin() as conn:
        staff.set_totp(conn, "ada@example.org", secret, at=AT)
    e.dispose()
    at = AT + timedelta(hours=1)
    without = run("content", "approve", slug, "--as", "ada@example.org", "--password-stdin", "--at", at.isoformat(),
                  input=PASSWORD + "\n")
    assert without.exit_code == 1 and "One-time code: expected a line on standard input" in without.output
    ok = run("content", "approve", slug, "--as", "ada@example.org", "--password-stdin", "--at", at.isoformat(),
             input=f"{PASSWORD}\n{totp.code_at(secret, at)}\n")
    assert ok.exit_code == 0, ok.output
    assert "approved bench-palliative-care revision" in ok.output
