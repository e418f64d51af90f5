"""Kill -9 the active `pipeline run` while it sends a weekly issue: the standby takes over within 30 seconds and
finishes the issue. Nobody is lost, and a second copy goes only to a batch that was in flight at a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pipeline.schedules import require_schedule
from pipeline.store.engine import make_engine
from tests.integration.test_delivery_crash import check_counts, cli_env, ledger_rows
from tests.integration.test_run_command import free_port
from tests.support.db import add_subscribers
from tests.support.processes import tagged_processes
from tests.support.project import ROOT, TOPICS, make_project, write_article
from tests.support.sendgrid_sink import Sink, SinkServer

pytestmark = pytest.mark.slow

SUBSCRIBERS = 8000  # eight requests, each answered after a second: long enough to kill the sender mid-issue


def project_for_now(tmp_path):
    """A project whose weekly issue, for the real clock the scheduler reads, has articles and a long grace."""
    project = make_project(tmp_path / "project")
    schedules = (ROOT / "schedules.yaml").read_text(encoding="utf-8")
    (project / "schedules.yaml").write_text(schedules.replace("misfire_grace: 6h", "misfire_grace: 30d"),
                                            encoding="utf-8")
    schedule = require_schedule(project / "schedules.yaml", topic_ids=frozenset(TOPICS))
    fire = schedule.job_for_digest("weekly").previous_fire(datetime.now(UTC))
    for i, topic in enumerate(TOPICS[:4]):
        write_article(project / "content", f"this-week-{topic}", title=f"This week: {topic.replace('-', ' ')}",
                      summary=f"A plain summary for this week, number {i}.", topic=topic,
                      publish_at=(fire - timedelta(days=1, hours=i)).isoformat(),
                      source=f"https://example.org/week-{i}")
    return project, fire


def start_run(env, project, port) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--port", str(port)], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def role(port: int) -> str | None:
    try:
        shown = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for name in ("active", "standby"):
        if f'pipeline_scheduler_role{{role="{name}"}} 1.0' in shown:
            return name
    return None


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_the_standby_finishes_an_issue_whose_active_scheduler_was_killed_mid_send(db_url, tmp_path):
    project, fire = project_for_now(tmp_path)
    engine = make_engine(db_url)
    add_subscribers(engine, SUBSCRIBERS)
    engine.dispose()
    tag = uuid.uuid4().hex
    runs: list[subprocess.Popen] = []
    try:
        with SinkServer(Sink(keep=False, delay=1.0)) as server:
            env = {**cli_env(db_url, project, server.url), "MBC_CRASH_TAG": tag, "PIPELINE_METRICS": "1"}
            # A send from the command line plans the issue, then dies after its first request.
            first = subprocess.Popen([sys.executable, "-m", "pipeline", "digest", "send", "weekly", "--at",
                                      fire.isoformat()], cwd=project, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            wait_for(lambda: server.sink.accepted >= 1 or first.poll() is not None, 60, "the first send never sent")
            first.kill()
            first.communicate(timeout=30)

            active_port, standby_port = free_port(), free_port()
            runs.append(start_run(env, project, active_port))
            wait_for(lambda: role(active_port) == "active", 60, "the first pipeline run never became active")
            runs.append(start_run(env, project, standby_port))
            wait_for(lambda: role(standby_port) == "standby", 60, "the second pipeline run never stood by")
            before_kill = server.sink.accepted
            assert {r.state for r in ledger_rows(db_url).values()} != {"sent"}, "finished before the kill"
            runs[0].kill()
            runs[0].communicate(timeout=30)
            started = time.monotonic()
            wait_for(lambda: role(standby_port) == "active", 30, "the standby did not take over within 30 s")
            took_over = time.monotonic() - started
            wait_for(lambda: {r.state for r in ledger_rows(db_url).values()} == {"sent"}, 120,
                     "the standby did not finish the issue")
            runs[1].send_signal(signal.SIGTERM)
            standby_output, _ = runs[1].communicate(timeout=60)
    finally:
        for proc in runs:
            if proc.poll() is None:
                proc.kill()
                print(proc.communicate(timeout=30)[0])
        for pid in tagged_processes(tag):
            os.kill(pid, signal.SIGKILL)
    assert runs[1].returncode == 0, standby_output
    assert "this one takes over" in standby_output
    assert "resuming it now" in standby_output
    assert took_over < 30
    assert server.sink.accepted > before_kill
    rows = ledger_rows(db_url)
    assert len(rows) == SUBSCRIBERS
    check_counts(server.sink, rows, kills=2)
