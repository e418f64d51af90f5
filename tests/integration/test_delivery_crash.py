"""Kill -9 a real `pipeline digest send` at random points, run it again, and count what the sink received.

Nobody is lost; a recipient gets a second copy only if their row was in flight at a kill, and then the ledger
says so (possible_duplicate). Concurrent senders on one issue send each recipient once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import select

from pipeline.digests.send import WORKER_MIN_RECIPIENTS
from pipeline.store.engine import make_engine
from pipeline.store.tables import deliveries
from tests.support.db import add_subscribers
from tests.support.processes import tagged_processes
from tests.support.project import AT, ROOT, make_project
from tests.support.sendgrid_sink import Sink, SinkServer

pytestmark = pytest.mark.slow


def cli_env(db_url: str, project, sink_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "SENDGRID_"))}
    env.update({
        "PIPELINE_DATABASE_URL": db_url, "PIPELINE_CONTENT_DIR": str(project / "content"),
        "PIPELINE_SCHEDULES": str(project / "schedules.yaml"), "PIPELINE_TEMPLATES_DIR": str(ROOT / "templates"),
        "PIPELINE_PUBLIC_DIR": str(project / "public"), "PIPELINE_VAR_DIR": str(project / "var"),
        "PIPELINE_SECRET_KEY": "crash-test-secret-0123456789", "PIPELINE_SITE_URL": "https://digest.example.org",
        "PIPELINE_DELIVERY": "sendgrid", "SENDGRID_API_KEY": "SG.crash-test", "PIPELINE_SENDGRID_HOST": sink_url,
        "PYTHONPATH": str(ROOT),
    })
    return env


def start_send(env, project, *, own_group: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "digest", "send", "weekly", "--at", AT.isoformat()],
                            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=own_group)


def run_to_the_end(env, project) -> None:
    final = start_send(env, project)
    _out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err


def kill_all(pids: list[int]) -> None:
    """Processes a failed test would otherwise leave running."""
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def ledger_rows(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {r.subscriber_id: r for r in conn.execute(select(deliveries))}
    finally:
        engine.dispose()


def check_counts(sink: Sink, rows, kills: int) -> None:
    per = {int(rid): n for (_issue, rid), n in sink.per_recipient.items()}
    assert set(per) == set(rows), "somebody was lost or someone unplanned was mailed"
    assert {r.state for r in rows.values()} == {"sent"}
    doubled = {sid for sid, n in per.items() if n > 1}
    flagged = {sid for sid, r in rows.items() if r.possible_duplicate}
    assert doubled <= flagged, "a duplicate outside the recorded in-flight window"
    assert len(flagged) <= kills * 1000  # at most one batch in flight per killed process
    assert max(per.values()) <= 1 + kills


def test_kill_9_at_random_points_then_rerun_loses_and_doubles_nobody(db_url, tmp_path):
    project = make_project(tmp_path / "project")
    engine = make_engine(db_url)
    add_subscribers(engine, 4500)
    engine.dispose()
    rng = random.Random(int(os.environ.get("CRASH_SEED", "4")))
    kills = 0
    with SinkServer(Sink(keep=False, delay=0.25)) as server:
        env = cli_env(db_url, project, server.url)
        deadline = time.monotonic() + 90
        for _ in range(4):
            proc = start_send(env, project)
            time.sleep(rng.uniform(0.5, 3.5))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
            assert time.monotonic() < deadline
        run_to_the_end(env, project)
    rows = ledger_rows(db_url)
    assert len(rows) == 4500
    check_counts(server.sink, rows, kills)
    assert kills >= 1


def test_kill_9_while_the_batch_worker_runs_then_rerun_loses_and_doubles_nobody(db_url, tmp_path):
    """As above, for an issue large enough that the sender builds requests in its worker process: killing the
    sender also takes down the worker (and the process that started it), and nobody is lost or doubled."""
    project = make_project(tmp_path / "project")
    engine = make_engine(db_url)
    add_subscribers(engine, WORKER_MIN_RECIPIENTS + 1000)
    engine.dispose()
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    kills = kills_beside_a_worker = 0
    tag = uuid.uuid4().hex
    try:
        with SinkServer(Sink(keep=False, delay=0.25)) as server:
            env = {**cli_env(db_url, project, server.url), "MBC_CRASH_TAG": tag}
            for _ in range(3):
                proc = start_send(env, project)
                time.sleep(rng.uniform(1.0, 3.0))
                if proc.poll() is None:
                    kills_beside_a_worker += len(tagged_processes(tag)) > 1
                    os.kill(proc.pid, signal.SIGKILL)
                    kills += 1
                proc.wait(timeout=30)
                deadline = time.monotonic() + 10
                while tagged_processes(tag) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert tagged_processes(tag) == [], "a worker (or its forkserver) outlived the killed sender"
                proc.communicate(timeout=30)
            run_to_the_end(env, project)
    finally:
        kill_all(tagged_processes(tag))
    rows = ledger_rows(db_url)
    assert len(rows) == WORKER_MIN_RECIPIENTS + 1000
    check_counts(server.sink, rows, kills)
    assert kills_beside_a_worker >= 1


def test_ctrl_c_during_a_send_with_a_worker_stops_cleanly_and_a_rerun_finishes(db_url, tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the whole process group, worker included. The send stops with a short
    message and no traceback, records the batch that was out, leaves no process behind, and a re-run finishes."""
    project = make_project(tmp_path / "project")
    engine = make_engine(db_url)
    add_subscribers(engine, WORKER_MIN_RECIPIENTS + 1000)
    engine.dispose()
    tag = uuid.uuid4().hex
    try:
        with SinkServer(Sink(keep=False, delay=0.25)) as server:
            env = {**cli_env(db_url, project, server.url), "MBC_CRASH_TAG": tag}
            proc = start_send(env, project, own_group=True)
            deadline = time.monotonic() + 30
            while server.sink.accepted < 2 and time.monotonic() < deadline:  # sending, with its worker
                time.sleep(0.05)
            assert len(tagged_processes(tag)) > 1
            os.killpg(proc.pid, signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode != 0 and "Aborted" in err
            assert "Traceback" not in err, err
            deadline = time.monotonic() + 10
            while tagged_processes(tag) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert tagged_processes(tag) == []
            stopped = ledger_rows(db_url)
            assert 0 < sum(r.state == "sent" for r in stopped.values()) < len(stopped)
            assert not any(r.possible_duplicate for r in stopped.values())  # what was out got recorded
            run_to_the_end(env, project)
    finally:
        kill_all(tagged_processes(tag))
    rows = ledger_rows(db_url)
    assert len(rows) == WORKER_MIN_RECIPIENTS + 1000 and {r.state for r in rows.values()} == {"sent"}
    assert len(server.sink.per_recipient) == len(rows) and set(server.sink.per_recipient.values()) == {1}


def test_concurrent_senders_send_each_recipient_once(db_url, tmp_path):
    project = make_project(tmp_path / "project")
    engine = make_engine(db_url)
    add_subscribers(engine, 6000)
    engine.dispose()
    # Each request takes long enough for the senders that start later to join in: a sender now also records the
    # content before planning, so the first one could otherwise finish alone.
    with SinkServer(Sink(keep=False, delay=0.3)) as server:
        env = cli_env(db_url, project, server.url)
        procs = [start_send(env, project) for _ in range(4)]
        for p in procs:
            _out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
    rows = ledger_rows(db_url)
    assert len(rows) == 6000 and {r.state for r in rows.values()} == {"sent"}
    per = server.sink.per_recipient
    assert len(per) == 6000 and max(per.values()) == 1
    assert not any(r.possible_duplicate for r in rows.values())
    assert len({r.claimed_by.split(":")[1] for r in rows.values()}) >= 2, "the work was not shared"
