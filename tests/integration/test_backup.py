"""`pipeline backup`: a copy taken while a digest is being sent restores to a database that finishes the issue."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from pipeline.cli import cli
from pipeline.store.engine import make_engine
from pipeline.store.tables import deliveries
from tests.integration.test_delivery_crash import cli_env, run_to_the_end, start_send
from tests.support.db import add_subscribers
from tests.support.project import make_project
from tests.support.sendgrid_sink import Sink, SinkServer

SUBSCRIBERS = 5000  # five requests of 1,000: time to take a backup between two of them


def backup(env, project, dest) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "backup", str(dest)], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def states(db_url: str) -> dict[int, str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {r.subscriber_id: r.state for r in conn.execute(select(deliveries))}
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_backup_taken_during_a_send_restores_to_a_database_that_finishes_the_issue(tmp_path):
    project = make_project(tmp_path / "project")
    live = tmp_path / "live.db"
    engine = make_engine(f"sqlite:///{live}")
    add_subscribers(engine, SUBSCRIBERS)
    engine.dispose()
    copy = tmp_path / "backups" / "pipeline-backup.db"
    with SinkServer(Sink(keep=False, delay=0.4)) as server:
        env = cli_env(f"sqlite:///{live}", project, server.url)
        sender = start_send(env, project)
        deadline = time.monotonic() + 60
        while server.sink.accepted < 1 and sender.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        taken = backup(env, project, copy)
        _out, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err
        assert taken.returncode == 0, taken.stderr
        assert "integrity check ok" in taken.stdout
        sent_before = server.sink.accepted

        in_backup = states(f"sqlite:///{copy}")
        assert len(in_backup) == SUBSCRIBERS
        assert "sent" in in_backup.values() and set(in_backup.values()) != {"sent"}, \
            "the backup was not taken mid-send"

        # Restore as the README says: the service stopped, the copy put in the database's place.
        restored = tmp_path / "restored" / "pipeline.db"
        restored.parent.mkdir()
        shutil.copyfile(copy, restored)
        env = cli_env(f"sqlite:///{restored}", project, server.url)
        run_to_the_end(env, project)
    after = states(f"sqlite:///{restored}")
    assert set(after) == set(in_backup) and set(after.values()) == {"sent"}
    assert {int(rid) for (_issue, rid) in server.sink.per_recipient} == set(after)
    assert server.sink.accepted > sent_before  # the restored database sent what it did not know was sent
    with sqlite3.connect(restored) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_backup_explains_postgresql_and_refuses_to_overwrite_the_live_database(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("PIPELINE_SECRET_KEY", "backup-test-secret-0123456789")
    monkeypatch.setenv("PIPELINE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    result = runner.invoke(cli, ["backup", str(tmp_path / "x.db")])
    assert result.exit_code == 1 and "pg_dump" in result.output
    assert not (tmp_path / "x.db").exists()

    live = tmp_path / "var" / "pipeline.db"
    monkeypatch.setenv("PIPELINE_DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'missing.db'}")
    result = runner.invoke(cli, ["backup", str(tmp_path / "x.db")])
    assert result.exit_code == 1 and "no database" in result.output

    make_engine(f"sqlite:///{live}").dispose()
    monkeypatch.setenv("PIPELINE_DATABASE_URL", f"sqlite:///{live}")
    before = live.read_bytes()
    result = runner.invoke(cli, ["backup", str(live)])
    assert result.exit_code == 1 and "live database itself" in result.output
    assert live.read_bytes() == before
    result = runner.invoke(cli, ["backup", str(tmp_path / "copy.db")])
    assert result.exit_code == 0, result.output
    assert list(tmp_path.glob(".copy.db.*.tmp")) == []
