"""Active and standby schedulers on one database: exactly one schedules; the other takes over when it dies."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text

from pipeline.scheduling.lock import SchedulerLock
from pipeline.scheduling.standby import Leadership
from pipeline.store.engine import make_engine
from tests.conftest import POSTGRES_URL, _postgres_schema_url


class Role:
    """A stand-in for the scheduler: counts starts and stops, so a test sees who is active."""

    def __init__(self):
        self.running = threading.Event()
        self.starts = self.stops = 0

    def start(self):
        self.starts += 1
        self.running.set()

        def stop():
            self.stops += 1
            self.running.clear()

        return stop


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_a_standby_takes_over_when_the_active_one_closes_and_never_both_run(db_url, tmp_path):
    engines = [make_engine(db_url), make_engine(db_url)]
    roles = [Role(), Role()]
    both = []
    leaders = [Leadership(SchedulerLock(e, tmp_path / "var"), start=r.start, poll=0.05) for e, r in zip(engines, roles, strict=True)]

    def watch_overlap():
        while not done.is_set():
            both.append(roles[0].running.is_set() and roles[1].running.is_set())
            time.sleep(0.005)

    done = threading.Event()
    watcher = threading.Thread(target=watch_overlap)
    watcher.start()
    try:
        leaders[0].begin()
        leaders[1].begin()
        assert leaders[0].active and not leaders[1].active
        time.sleep(0.3)  # several polls: the standby must not start while the active one holds the lock
        assert roles[1].starts == 0
        leaders[0].close()
        assert roles[0].stops == 1
        assert wait_for(lambda: leaders[1].active)
        assert roles[1].starts == 1
    finally:
        done.set()
        watcher.join()
        for leader in leaders:
            leader.close()
        for engine in engines:
            engine.dispose()
    assert not any(both)


@pytest.fixture
def postgres_url():
    url, drop = _postgres_schema_url()
    yield url
    drop()


@pytest.mark.postgres
def test_an_active_scheduler_whose_lock_connection_drops_stops_and_the_standby_takes_over(tmp_path, postgres_url):
    database_url = postgres_url
    engines = [make_engine(database_url), make_engine(database_url)]
    roles = [Role(), Role()]
    leaders = [Leadership(SchedulerLock(e, tmp_path / "var"), start=r.start, poll=0.05) for e, r in zip(engines, roles, strict=True)]
    admin = create_engine(POSTGRES_URL)
    try:
        leaders[0].begin()
        leaders[1].begin()
        assert leaders[0].active and not leaders[1].active
        with admin.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                                {"pid": leaders[0].lock.backend_pid}).scalar()
        assert wait_for(lambda: not leaders[0].active and leaders[1].active)
        assert roles[0].stops == 1 and not roles[0].running.is_set()
        assert roles[1].running.is_set()
    finally:
        for leader in leaders:
            leader.close()
        for engine in engines:
            engine.dispose()
        admin.dispose()
