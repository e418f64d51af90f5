"""A web worker killed right after answering loses no email, and an operator drains the outbox from the command line
(`pipeline outbox status|send`), against real processes and a real aiosmtpd relay on loopback."""

from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import sys
import time
from email import policy
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from pipeline.store import tables
from tests.support import smtp_server

ROOT = Path(__file__).resolve().parents[2]


def env_for(tmp_path: Path, port: int, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "SENDGRID_"))}
    env.update({
        "PIPELINE_DATABASE_URL": f"sqlite:///{tmp_path}/pipeline.db", "PIPELINE_PUBLIC_DIR": str(tmp_path / "public"),
        "PIPELINE_VAR_DIR": str(tmp_path / "var"), "PIPELINE_SITE_URL": f"http://127.0.0.1:{port}",
        "PIPELINE_SECRET_KEY": "outbox-test-secret-" + "q" * 30, "PIPELINE_DELIVERY": "smtp",
        "PIPELINE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "PYTHONPATH": str(ROOT),
    })
    return env


def cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def start(command: str, env, tmp_path: Path, port: int) -> subprocess.Popen:
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", command, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the server did not start:\n" + (tmp_path / "server.log").read_text())
        time.sleep(0.1)


def sign_up(port: int, address: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        page = client.get("/subscribe")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = client.post("/subscribe", data={"csrf_token": csrf, "email": address, "name": "",
                                            "topics": ["clinical-trials"], "cadence": "weekly",
                                            "timezone": "America/Chicago"})
    assert r.status_code == 200 and "check your inbox" in r.text.lower()


def test_pipeline_run_delivers_a_confirmation_once_the_relay_is_back_without_any_command(tmp_path):
    port, smtp_port = smtp_server.free_port(), smtp_server.free_port()  # the relay is down during the sign-up
    env = env_for(tmp_path, port, smtp_port)
    proc = start("run", env, tmp_path, port)
    handler = smtp_server.SavingHandler(tmp_path / "mail")
    relay = None
    try:
        sign_up(port, "ivy@example.org")
        engine = create_engine(env["PIPELINE_DATABASE_URL"])
        try:
            deadline = time.monotonic() + 30
            while True:  # the sender in `pipeline run` has tried, and the relay did not take it
                with engine.connect() as conn:
                    row = conn.execute(select(tables.outbox)).one()
                if row.attempts >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            engine.dispose()
        assert row.state == "pending" and row.attempts >= 1
        relay = smtp_server.start(handler, port=smtp_port)
        up = time.monotonic()
        while not handler.saved and time.monotonic() - up < 30:
            time.sleep(0.05)
        took = time.monotonic() - up
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if relay is not None:
            relay.stop()
    assert len(handler.saved) == 1, (tmp_path / "server.log").read_text()
    msg = email.message_from_bytes(handler.saved[0][1], policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "ivy@example.org"
    assert took < 15, f"the first retry came {took:.1f}s after the relay was back"


def test_a_killed_web_worker_loses_no_confirmation_and_outbox_send_delivers_it(tmp_path):
    port, smtp_port = smtp_server.free_port(), smtp_server.free_port()  # nothing listens on smtp_port yet
    env = env_for(tmp_path, port, smtp_port)
    proc = start("serve", env, tmp_path, port)
    try:
        sign_up(port, "eve@example.org")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the worker dies right after answering
        proc.wait(timeout=10)

    engine = create_engine(env["PIPELINE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            [row] = conn.execute(select(tables.outbox)).all()
    finally:
        engine.dispose()
    assert row.state == "pending" and row.kind == "confirm" and b"eve@example.org" in row.message

    status = cli(env, "outbox", "status")
    assert status.returncode == 0, status.stderr
    assert "pending 1, sent 0, failed 0, dropped 0" in status.stdout and "oldest pending: " in status.stdout

    down = cli(env, "outbox", "send")  # the relay is still away: it says so, and exits 1
    assert down.returncode == 1, down.stdout + down.stderr
    assert down.stdout.startswith("sent 0, failed 0, to try again 1,"), down.stdout  # tried once, not twice
    assert "1 message(s) still waiting" in down.stdout and "did not take it" in down.stdout
    assert "eve@example.org" not in down.stdout + down.stderr

    handler = smtp_server.SavingHandler(tmp_path / "mail")
    relay = smtp_server.start(handler, port=smtp_port)
    try:
        sent = cli(env, "outbox", "send")
    finally:
        relay.stop()
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.startswith("sent 1, failed 0")
    [(_rcpts, data)] = handler.saved
    msg = email.message_from_bytes(data, policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "eve@example.org" and msg["X-Pipeline-Kind"] == "confirm"
    assert "/confirm/" in msg.get_body(("plain",)).get_content()
    after = cli(env, "outbox", "status")
    assert "pending 0, sent 1, failed 0, dropped 0" in after.stdout and "oldest pending: none" in after.stdout


def test_outbox_send_exits_1_and_names_the_reason_of_a_refusal(tmp_path):
    handler = smtp_server.SavingHandler(tmp_path / "mail", refuse=frozenset({"gone@example.org"}))
    handler.refusal = "550 5.1.1 <gone@example.org>: no such user here"  # relays often quote the address
    relay = smtp_server.start(handler)
    env = env_for(tmp_path, smtp_server.free_port(), relay.port)
    try:
        from pipeline.delivery import outbox
        from pipeline.store.engine import make_engine

        engine = make_engine(env["PIPELINE_DATABASE_URL"])
        with engine.begin() as conn:
            for to in ("gone@example.org", "here@example.org"):
                msg = email.message.EmailMessage()
                msg["From"], msg["To"], msg["Subject"], msg["X-Pipeline-Kind"] = "n@example.org", to, "Hi", "welcome"
                msg.set_content("hello")
                from datetime import UTC, datetime

                outbox.enqueue(conn, msg, at=datetime.now(UTC))
        engine.dispose()
        result = cli(env, "outbox", "send")
        status = cli(env, "outbox", "status")
    finally:
        relay.stop()
    assert result.returncode == 1
    assert result.stdout.startswith("sent 1, failed 1")
    assert "failed (1): " in result.stdout and "550" in result.stdout
    assert "gone@example.org" not in result.stdout + result.stderr + status.stdout
    assert "pending 0, sent 1, failed 1, dropped 0" in status.stdout and "failed (1): " in status.stdout
