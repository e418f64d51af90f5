from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from pipeline.schedules import load_schedule
from pipeline.scheduling.lock import SchedulerLock
from pipeline.scheduling.runner import make_scheduler, resume_unfinished
from pipeline.store.engine import make_engine
from pipeline.store.tables import issues
from tests.support.db import add_issue, add_subscribers

RUNS: list[str] = []
TASK = "tests.integration.test_scheduler_runner:record"


def record(job_id: str) -> None:
    RUNS.append(job_id)


def schedule_for(tmp_path: Path):
    path = tmp_path / "schedules.yaml"
    path.write_text("""timezone: America/New_York
digests:
  weekly: {title: "Weekly", cadence: weekly, topics: all}
jobs:
  - {id: weekly-digest, task: send-digest, digest: weekly, cron: "0 8 * * mon", misfire_grace: 6h}
""")
    schedule, problems = load_schedule(path)
    assert problems == []
    return schedule


def wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Downtime:
    """A scheduler that stored its jobs and then died (never shut down) with a run due ``missed_by`` ago."""

    def __init__(self, db_url: str, schedule, missed_by: timedelta):
        self.engine = make_engine(db_url)
        self.scheduler = make_scheduler(self.engine, schedule, task_ref=TASK)
        self.scheduler.modify_job("weekly-digest", next_run_time=datetime.now(UTC) - missed_by)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.scheduler.shutdown(wait=False)
        self.engine.dispose()


def test_jobs_persist_with_ids_and_grace(db_url, tmp_path):
    engine = make_engine(db_url)
    scheduler = make_scheduler(engine, schedule_for(tmp_path), task_ref=TASK)
    try:
        job = scheduler.get_job("weekly-digest")
        assert job.misfire_grace_time == 6 * 3600 and job.coalesce is True
        assert job.next_run_time.weekday() == 0 and job.next_run_time.hour == 8
    finally:
        scheduler.shutdown(wait=False)
        engine.dispose()


def test_missed_digest_runs_once_on_restart_within_grace(db_url, tmp_path):
    RUNS.clear()
    schedule = schedule_for(tmp_path)
    with Downtime(db_url, schedule, timedelta(hours=1)):
        engine = make_engine(db_url)
        scheduler = make_scheduler(engine, schedule, task_ref=TASK)
        try:
            scheduler.resume()
            assert wait_for(lambda: RUNS == ["weekly-digest"])
            time.sleep(0.3)
            assert RUNS == ["weekly-digest"]
            assert scheduler.get_job("weekly-digest").next_run_time > datetime.now(UTC)
        finally:
            scheduler.shutdown(wait=True)
            engine.dispose()


def test_missed_digest_beyond_grace_is_skipped_with_a_warning(db_url, tmp_path, caplog):
    RUNS.clear()
    schedule = schedule_for(tmp_path)
    with Downtime(db_url, schedule, timedelta(hours=7)):
        engine = make_engine(db_url)
        scheduler = make_scheduler(engine, schedule, task_ref=TASK)
        try:
            with caplog.at_level(logging.WARNING, logger="pipeline.scheduling"):
                scheduler.resume()
                assert wait_for(lambda: any(getattr(r, "action", "") == "job_missed" for r in caplog.records))
            assert RUNS == []
            assert scheduler.get_job("weekly-digest").next_run_time > datetime.now(UTC)
        finally:
            scheduler.shutdown(wait=True)
            engine.dispose()


@pytest.mark.parametrize(("issue", "after_fire", "resumed"), [
    ("unfinished", timedelta(minutes=10), True),
    ("unfinished", timedelta(hours=7), False),  # past the 6 h grace: reported, not sent late
    ("complete", timedelta(minutes=10), False),
    ("none", timedelta(minutes=10), False),
])
def test_an_issue_left_unfinished_is_resumed_at_start_within_its_grace(db_url, tmp_path, caplog, issue, after_fire,
                                                                       resumed):
    RUNS.clear()
    schedule = schedule_for(tmp_path)
    fire = schedule.jobs[0].previous_fire(datetime.now(UTC))
    engine = make_engine(db_url)
    if issue != "none":
        issue_id = add_issue(engine, add_subscribers(engine, 3), fire_at=fire)
        if issue == "complete":
            with engine.begin() as conn:
                conn.execute(update(issues).where(issues.c.id == issue_id).values(completed_at=fire))
    scheduler = make_scheduler(engine, schedule, task_ref=TASK)
    try:
        with caplog.at_level(logging.INFO, logger="pipeline.scheduling"):
            queued = resume_unfinished(scheduler, engine, schedule, now=fire + after_fire, task_ref=TASK)
        scheduler.resume()
        if resumed:
            assert queued == ["weekly-digest"]
            assert wait_for(lambda: RUNS == ["weekly-digest"])
            assert wait_for(lambda: scheduler.get_job("weekly-digest:resume") is None)  # a one-off run
        else:
            assert queued == []
            time.sleep(0.3)
            assert RUNS == []
        left = [r.getMessage() for r in caplog.records if getattr(r, "action", "") == "digest_left_unfinished"]
        if issue == "unfinished" and not resumed:
            assert left == [f"the weekly issue of {fire.isoformat()} was left unfinished and is past its 6:00:00 "
                            f"grace; not resumed. To finish it, run: pipeline digest send weekly --at {fire.isoformat()}"]
        else:
            assert left == []
        assert scheduler.get_job("weekly-digest").next_run_time > datetime.now(UTC)
    finally:
        scheduler.shutdown(wait=True)
        engine.dispose()


def test_one_scheduler_lock_per_database_and_it_is_free_again_once_released(db_url, tmp_path):
    engine, other = make_engine(db_url), make_engine(db_url)
    first, second = SchedulerLock(engine, tmp_path / "var"), SchedulerLock(other, tmp_path / "var")
    try:
        assert first.try_acquire() and first.held()
        assert not second.try_acquire() and not second.held()
        first.release()
        assert not first.held()
        assert second.try_acquire() and second.held()
    finally:
        first.release()
        second.release()
        engine.dispose()
        other.dispose()


def test_a_local_digest_gets_a_waves_job_every_15_minutes_that_runs_at_once_on_start(db_url, tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text("""timezone: America/New_York
digests:
  weekly: {title: "Weekly", cadence: weekly, topics: all}
  morning: {title: "Morning", cadence: weekly, topics: all, deliver_at: local, local_time: "08:00"}
jobs:
  - {id: weekly-digest, task: send-digest, digest: weekly, cron: "0 8 * * mon", misfire_grace: 6h}
  - {id: morning-digest, task: send-digest, digest: morning, cron: "0 8 * * sun", misfire_grace: 1h}
""")
    schedule, problems = load_schedule(path)
    assert problems == []
    RUNS.clear()
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    if now.minute % 15 == 0 and now.second == 0:
        now += timedelta(seconds=1)
    scheduler = make_scheduler(engine, schedule, task_ref=TASK, clock=lambda: now)
    try:
        waves = scheduler.get_job("morning-digest:waves")
        assert waves is not None and scheduler.get_job("weekly-digest:waves") is None
        assert waves.trigger.interval == timedelta(minutes=15)
        assert scheduler.get_job("morning-digest:waves-start").next_run_time == now
        nxt = waves.next_run_time
        assert timedelta(0) < nxt - now <= timedelta(minutes=15) and nxt.minute % 15 == 0 and nxt.second == 0
        scheduler.resume()
        assert wait_for(lambda: "morning-digest" in RUNS)  # a wave missed while down goes out on start
        assert RUNS == ["morning-digest"]
    finally:
        scheduler.shutdown(wait=False)
        engine.dispose()
