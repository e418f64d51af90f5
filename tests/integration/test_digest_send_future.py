"""`digest send --at` later than now: refused unless --force, and a forced send never completes an unended period."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from pipeline.cli import cli
from pipeline.delivery.file import FileBackend
from pipeline.digests.send import send_digest
from pipeline.store.engine import make_engine
from pipeline.store.tables import issues
from pipeline.subscribers import repository

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NY = ZoneInfo("America/New_York")


def next_monday_8am(after: datetime) -> datetime:
    local = after.astimezone(NY)
    day = local.date() + timedelta(days=(7 - local.weekday()) % 7 or 7)
    return datetime(day.year, day.month, day.day, 8, tzinfo=NY)


@pytest.fixture
def project(tmp_path, monkeypatch, db_url):
    content = tmp_path / "content"
    shutil.copytree(FIXTURES / "digest_content", content)
    fire = next_monday_8am(datetime.now(UTC) + timedelta(days=1))
    (content / "queued-for-monday.md").write_text(
        (FIXTURES / "digest_content" / "next-issue-item.md").read_text()
        .replace("publish_at: 2026-11-23T08:01:00-05:00", f"publish_at: {(fire - timedelta(hours=1)).isoformat()}")
        .replace("topics: [support-resources]", "topics: [clinical-trials]"))
    monkeypatch.chdir(tmp_path)
    for key, value in {"PIPELINE_DATABASE_URL": db_url, "PIPELINE_CONTENT_DIR": str(content),
                       "PIPELINE_SCHEDULES": str(FIXTURES / "digest_schedules.yaml"),
                       "PIPELINE_OUTBOX": str(tmp_path / "outbox"), "PIPELINE_PUBLIC_DIR": str(tmp_path / "public"),
                       "PIPELINE_TEMPLATES_DIR": str(FIXTURES.parent.parent / "templates"),
                       "PIPELINE_SECRET_KEY": "k" * 40}.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        repository.upsert(conn, email="reader@example.org", name="", topics=("clinical-trials",), cadence="weekly",
                          timezone="UTC", at=datetime(2026, 1, 1, tzinfo=UTC), status="confirmed",
                          consent_source="test")
    yield tmp_path, fire, engine
    engine.dispose()


def _issues(engine):
    with engine.connect() as conn:
        return conn.execute(select(issues)).all()


def test_a_future_at_is_refused_with_a_clear_message_and_sends_nothing(project):
    tmp, fire, engine = project
    result = CliRunner().invoke(cli, ["digest", "send", "weekly", "--at", fire.isoformat()])
    assert result.exit_code == 1
    assert "is later than now" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert _issues(engine) == [] and not list((tmp / "outbox").glob("*.eml"))
    # A dry run changes nothing, so it needs no --force.
    dry = CliRunner().invoke(cli, ["digest", "send", "weekly", "--at", fire.isoformat(), "--dry-run"])
    assert dry.exit_code == 0 and _issues(engine) == []


def test_a_forced_future_send_sends_but_leaves_the_period_open_until_it_ends(project):
    tmp, fire, engine = project
    result = CliRunner().invoke(cli, ["digest", "send", "weekly", "--at", fire.isoformat(), "--force"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp / "outbox").glob("*.eml"))) == 1
    [row] = _issues(engine)
    assert row.completed_at is None and row.period_end == fire.astimezone(UTC)
    assert "The issue stays open: its period ends at" in result.output
    assert "The issue is complete" not in result.output
    # A run after the period has ended (the scheduler's) completes it, sending nothing twice.
    from pipeline.content.loader import load_library
    from pipeline.schedules import require_schedule

    library, _ = load_library(tmp / "content")
    schedule = require_schedule(FIXTURES / "digest_schedules.yaml", topic_ids=frozenset(library.topic_ids))
    from pipeline.settings import load_settings

    report = send_digest("weekly", at=fire, settings=load_settings(), engine=engine, library=library,
                         schedule=schedule, backend=FileBackend(tmp / "outbox"),
                         clock=lambda: fire + timedelta(minutes=5))
    assert report.complete and report.sent_now == 0
    assert _issues(engine)[0].completed_at == (fire + timedelta(minutes=5)).astimezone(UTC)
    assert len(list((tmp / "outbox").glob("*.eml"))) == 1
