from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "pipeline run did not come up"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_builds_feeds_serves_and_stops_cleanly(tmp_path, sig):
    for name in ("content", "templates"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "schedules.yaml", tmp_path / "schedules.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PIPELINE_METRICS"] = "1"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(proc, port)
        feed = httpx.get(f"http://127.0.0.1:{port}/feeds/all.atom.xml", timeout=5)
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
        assert (tmp_path / "public" / "feeds" / "all.json").is_file()
        shown = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'pipeline_scheduler_role{role="active"} 1.0' in shown
        assert "pipeline_feed_build_last_success 1.0" in shown
    finally:
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "scheduler stopped" in output
    assert "Traceback" not in output


def test_a_second_run_finds_the_lock_before_building_any_feed_and_stands_by(tmp_path):
    from pipeline.scheduling.lock import SchedulerLock
    from pipeline.store.engine import make_engine

    for name in ("content", "templates"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "schedules.yaml", tmp_path / "schedules.yaml")
    url = f"sqlite:///{tmp_path}/var/pipeline.db"
    (tmp_path / "var").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PYTHONPATH=str(ROOT), PIPELINE_DATABASE_URL=url)
    engine = make_engine(url)
    lock = SchedulerLock(engine, tmp_path / "var")
    port = free_port()
    try:
        assert lock.try_acquire()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until_up(proc, port)
            assert not (tmp_path / "public" / "feeds").exists(), "a standby built the feeds"
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
    finally:
        lock.release()
        engine.dispose()
    assert proc.returncode == 0, output
    assert "this one serves the web app and stands by" in output and "Traceback" not in output
