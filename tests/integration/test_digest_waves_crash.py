"""Kill -9 a real `pipeline digest send` of a deliver_at: local digest mid-wave, run it again: nobody due is lost,
nobody is doubled outside the batch that was in flight, and nobody not yet due is mailed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from pipeline.store.engine import make_engine
from pipeline.store.tables import subscribers
from tests.integration.test_delivery_crash import check_counts, cli_env, ledger_rows
from tests.support.db import add_subscribers
from tests.support.project import AT, make_project
from tests.support.sendgrid_sink import Sink, SinkServer

pytestmark = pytest.mark.slow

# AT is 14:00 UTC on Monday 23 November: 08:00 has come in London (08:00 UTC) and New York (13:00 UTC), not yet in
# Honolulu (18:00 UTC).
DUE_BY_ZONE = {"Europe/London": datetime(2026, 11, 23, 8, tzinfo=UTC),
               "America/New_York": datetime(2026, 11, 23, 13, tzinfo=UTC),
               "Pacific/Honolulu": datetime(2026, 11, 23, 18, tzinfo=UTC)}


def local_project(tmp_path):
    project = make_project(tmp_path / "project")
    path = project / "schedules.yaml"
    path.write_text(path.read_text().replace("    topics: all\n", "    topics: all\n    deliver_at: local\n"
                                             "    local_time: \"08:00\"\n", 1))
    return project


def test_kill_9_mid_wave_then_rerun_loses_and_doubles_nobody_and_sends_nobody_early(db_url, tmp_path):
    project = local_project(tmp_path)
    engine = make_engine(db_url)
    ids = add_subscribers(engine, 3000)
    zone_of = {sid: list(DUE_BY_ZONE)[sid % 3] for sid in ids}
    with engine.begin() as conn:
        for zone in DUE_BY_ZONE:
            conn.execute(update(subscribers).where(subscribers.c.id.in_([s for s, z in zone_of.items() if z == zone]))
                         .values(timezone=zone))
    engine.dispose()
    args = [sys.executable, "-m", "pipeline", "digest", "send", "weekly", "--at", AT.isoformat()]
    with SinkServer(Sink(keep=False, delay=0.25)) as server:
        env = cli_env(db_url, project, server.url)
        proc = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while server.sink.accepted < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        final = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
        assert "Wave still to come: 1000 at 2026-11-23T18:00:00+00:00." in final.stdout
        status = subprocess.run([*args[:4], "status", "weekly", "--at", AT.isoformat()], cwd=project, env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert "wave 2026-11-23T08:00:00+00:00: sent (1000 done)" in status.stdout
        assert "wave 2026-11-23T13:00:00+00:00: sent (1000 done)" in status.stdout
        assert "wave 2026-11-23T18:00:00+00:00: to come (1000 recipients; 0 done)" in status.stdout
    rows = ledger_rows(db_url)
    assert len(rows) == 3000
    for sid, row in rows.items():
        assert row.due_at == DUE_BY_ZONE[zone_of[sid]]
    due = {sid: r for sid, r in rows.items() if r.due_at <= AT}
    later = {sid: r for sid, r in rows.items() if r.due_at > AT}
    assert len(due) == 2000 and {r.state for r in later.values()} == {"pending"}
    per = {int(rid) for (_issue, rid) in server.sink.per_recipient}
    assert per.isdisjoint(later), "someone was mailed before their time"
    check_counts(server.sink, due, kills=1)
