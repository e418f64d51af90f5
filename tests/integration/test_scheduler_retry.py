"""The running service finishes an issue whose recipients wait for the relay: it retries soon at first, then less
often, while the job's misfire_grace lasts, and past it logs the command that would finish the issue."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from sqlalchemy import select

from pipeline.schedules import load_schedule
from pipeline.scheduling.runner import TASK_REF, Retrier, make_scheduler, retry_delay
from pipeline.scheduling.tasks import STOPPING
from pipeline.store.engine import make_engine
from pipeline.store.tables import deliveries, issues
from tests.conftest import ROOT
from tests.support import smtp_server
from tests.support.db import add_subscribers

N = 5
SCHEDULE = """timezone: UTC
digests:
  weekly: {title: "Weekly", cadence: weekly, topics: all}
jobs:
  - {id: weekly-digest, task: send-digest, digest: weekly, cron: "0 * * * *", misfire_grace: 6h}
"""


def schedule_at(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text(SCHEDULE)
    schedule, problems = load_schedule(path)
    assert problems == []
    return schedule


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Seen(logging.Handler):
    def __init__(self, action: str):
        super().__init__()
        self.action, self.event, self.messages = action, threading.Event(), []

    def emit(self, record):
        if getattr(record, "action", "") == self.action:
            self.messages.append(record.getMessage())
            self.event.set()


def test_retry_delays_start_soon_and_are_capped():
    assert [retry_delay(n).total_seconds() for n in range(8)] == [30, 60, 120, 240, 480, 900, 900, 900]


def test_retries_are_scheduled_within_the_grace_and_past_it_the_command_is_logged(db_url, tmp_path, caplog):
    schedule = schedule_at(tmp_path)
    fire = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    now = [fire + timedelta(minutes=2)]
    engine = make_engine(db_url)
    scheduler = make_scheduler(engine, schedule)
    retrier = Retrier(scheduler, schedule, task_ref=TASK_REF, first=timedelta(seconds=30),
                      cap=timedelta(minutes=15), clock=lambda: now[0])
    left = {"job": "weekly-digest", "digest": "weekly", "fire_at": fire.isoformat(), "waiting": 17}
    try:
        runs = []
        for _ in range(7):
            retrier(JobExecutionEvent(EVENT_JOB_EXECUTED, "weekly-digest", "default", now[0], retval=left))
            job = scheduler.get_job("weekly-digest:retry")
            runs.append((job.trigger.run_date - now[0]).total_seconds())
            assert job.args == ("weekly-digest", fire.isoformat())
        assert runs == [30, 60, 120, 240, 480, 900, 900]
        scheduler.remove_job("weekly-digest:retry")
        retrier(JobExecutionEvent(EVENT_JOB_EXECUTED, "weekly-digest", "default", now[0], retval=None))
        assert scheduler.get_job("weekly-digest:retry") is None  # nothing waits: nothing to retry
        now[0] = fire + timedelta(hours=5, minutes=50)  # the next wait would end past the 6 h grace
        with caplog.at_level(logging.WARNING, logger="pipeline.scheduling"):
            retrier(JobExecutionEvent(EVENT_JOB_EXECUTED, "weekly-digest", "default", now[0], retval=left))
        assert scheduler.get_job("weekly-digest:retry") is None
        assert [r.getMessage() for r in caplog.records if getattr(r, "action", "") == "digest_left_unfinished"] == [
            f"the weekly issue of {fire.isoformat()} still has 17 recipients waiting and is past its 6:00:00 grace; "
            f"not retried. To finish it, run: pipeline digest send weekly --at {fire.isoformat()}"]
    finally:
        scheduler.shutdown(wait=False)
        engine.dispose()


@pytest.fixture
def project(tmp_path, monkeypatch, db_url):
    """A project whose hourly digest has one article in the hour that ended at the last fire time."""
    schedule = schedule_at(tmp_path)
    fire = schedule.jobs[0].previous_fire(datetime.now(UTC))
    content = tmp_path / "content"
    content.mkdir()
    shutil.copy(ROOT / "content" / "topics.yaml", content / "topics.yaml")
    (content / "an-hour-ago.md").write_text(f"""---
title: "A short article for the test"
summary: "A plain summary."
topics: [treatment-progress]
status: approved
publish_at: {(fire - timedelta(minutes=5)).isoformat()}
reviewed_by: "Sample Reviewer, MD"
reviewed_on: 2026-11-01
sources:
  - title: "Example source"
    url: "https://example.org/source"
---

A short article. Talk with your care team about what matters to you.
""", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "PIPELINE_DATABASE_URL": db_url, "PIPELINE_SECRET_KEY": "test-secret", "PIPELINE_VAR_DIR": str(tmp_path / "var"),
        "PIPELINE_CONTENT_DIR": str(content), "PIPELINE_SCHEDULES": str(tmp_path / "schedules.yaml"),
        "PIPELINE_TEMPLATES_DIR": str(ROOT / "templates"), "PIPELINE_PUBLIC_DIR": str(tmp_path / "public"),
        "PIPELINE_RELAY_PATIENCE": "1s", "PIPELINE_DELIVERY": "smtp",
    }.items():
        monkeypatch.setenv(name, value)
    return schedule, fire


def test_the_scheduler_sends_waiting_recipients_once_when_the_relay_is_back(project, db_url, tmp_path, monkeypatch,
                                                                            caplog):
    schedule, fire = project
    port = smtp_server.free_port()
    monkeypatch.setenv("PIPELINE_SMTP_URL", f"smtp://127.0.0.1:{port}")
    handler = smtp_server.SavingHandler(tmp_path / "mail")
    engine = make_engine(db_url)
    add_subscribers(engine, N)
    retried = Seen("digest_retry_scheduled")
    caplog.set_level(logging.INFO, logger="pipeline.scheduling")
    logging.getLogger("pipeline.scheduling").addHandler(retried)
    scheduler = make_scheduler(engine, schedule, retry_first=timedelta(seconds=0.5), retry_max=timedelta(seconds=1))
    relay = None
    try:
        # The issue's regular run, as if it had just fired, with the relay down.
        scheduler.add_job(TASK_REF, trigger="date", id="weekly-digest:now", args=["weekly-digest", fire.isoformat()],
                          jobstore="once", misfire_grace_time=3600)
        scheduler.resume()
        assert retried.event.wait(30), "no retry was scheduled"
        assert retried.messages[0].startswith(f"the weekly issue of {fire.isoformat()} has {N} recipients waiting")
        with engine.connect() as conn:
            states = Counter(conn.execute(select(deliveries.c.state)).scalars())
            assert conn.execute(select(issues.c.completed_at)).scalar_one() is None
        assert states == {"pending": N}  # waiting, never failed
        relay = smtp_server.start(handler, port=port)  # the relay is back; nobody runs a command

        def finished() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(issues.c.completed_at)).scalar_one() is not None
        assert wait_for(finished, 60)
        copies = Counter(rcpt for rcpts, _data in handler.saved for rcpt in rcpts)
        assert copies == Counter({f"reader{i}@example.org": 1 for i in range(1, N + 1)})
        with engine.connect() as conn:
            assert Counter(conn.execute(select(deliveries.c.state)).scalars()) == {"sent": N}
    finally:
        logging.getLogger("pipeline.scheduling").removeHandler(retried)
        STOPPING.set()  # as `pipeline run` stops: a send in progress ends after its batch
        scheduler.shutdown(wait=True)
        STOPPING.clear()
        if relay is not None:
            relay.stop()
        engine.dispose()
