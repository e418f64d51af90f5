"""A relay's or an API's trouble is never a subscriber's failure: `pipeline digest send` against aiosmtpd and the
SendGrid sink on loopback, misbehaving in the ways real relays do. Each test checks the exit code, the printed
lines, the ledger, and that every recipient gets exactly one copy once the relay is back."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from pipeline.cli import cli
from pipeline.store.engine import make_engine
from pipeline.store.tables import deliveries, issues
from tests.conftest import FIXTURES, ROOT
from tests.support import smtp_server
from tests.support.db import add_subscribers
from tests.support.sendgrid_sink import SinkServer

AT = "2026-11-23T14:00:00+00:00"  # just after the weekly fire of 2026-11-23 08:00 New York
N = 6
EVERYONE = {f"reader{i}@example.org" for i in range(1, N + 1)}


@pytest.fixture
def env(tmp_path, monkeypatch, db_url):
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "PIPELINE_DATABASE_URL": db_url, "PIPELINE_SECRET_KEY": "test-secret", "PIPELINE_VAR_DIR": str(tmp_path / "var"),
        "PIPELINE_CONTENT_DIR": str(FIXTURES / "digest_content"), "PIPELINE_SCHEDULES": str(FIXTURES / "digest_schedules.yaml"),
        "PIPELINE_TEMPLATES_DIR": str(ROOT / "templates"), "PIPELINE_PUBLIC_DIR": str(tmp_path / "public"),
        "PIPELINE_SITE_URL": "https://digest.example.org", "PIPELINE_RELAY_PATIENCE": "2s",
    }.items():
        monkeypatch.setenv(name, value)
    engine = make_engine(db_url)
    add_subscribers(engine, N)
    yield engine
    engine.dispose()


@pytest.fixture
def relay(tmp_path):
    """An SMTP relay on a port of its own, started and stopped by the test."""
    port = smtp_server.free_port()
    handler = smtp_server.SavingHandler(tmp_path / "mail")
    running: list = []

    class Relay:
        def __init__(self):
            self.port, self.handler = port, handler

        def start(self, **kw):
            running.append(smtp_server.start(handler, port=port, **kw))

        def stop(self):
            running.pop().stop()

        def copies(self) -> Counter:
            return Counter(rcpt for rcpts, _data in handler.saved for rcpt in rcpts)

    yield Relay()
    for controller in running:
        controller.stop()


def send(*args: str):
    return CliRunner().invoke(cli, ["digest", "send", "weekly", "--at", AT, *args], catch_exceptions=False)


def problems(result) -> list[str]:
    """stderr without the progress lines."""
    return [line for line in result.stderr.splitlines() if not line.startswith("digest weekly: ")]


def status():
    return CliRunner().invoke(cli, ["digest", "status", "weekly", "--at", AT], catch_exceptions=False)


def ledger(engine) -> dict[str, list[tuple[str, str | None]]]:
    """state -> [(email, reason)] for the one issue."""
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.subscriber_id, deliveries.c.state, deliveries.c.reason)
                            .order_by(deliveries.c.subscriber_id)).all()
    out: dict[str, list] = {}
    for sid, state, reason in rows:
        out.setdefault(state, []).append((f"reader{sid}@example.org", reason))
    return out


def completed(engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(issues.c.completed_at)).scalar_one() is not None


class _Waiting(logging.Handler):
    """Sets an event the first time the send says it is waiting for the relay."""

    def __init__(self):
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record):
        if getattr(record, "action", "") == "relay_waiting":
            self.seen.set()


def test_a_relay_that_refuses_connections_at_first_is_waited_for(env, relay, monkeypatch):
    monkeypatch.setenv("PIPELINE_DELIVERY", "smtp")
    monkeypatch.setenv("PIPELINE_SMTP_URL", f"smtp://127.0.0.1:{relay.port}")
    monkeypatch.setenv("PIPELINE_RELAY_PATIENCE", "30s")
    watcher = _Waiting()
    logging.getLogger("pipeline.delivery").addHandler(watcher)

    def start_when_refused():
        if watcher.seen.wait(30):
            relay.start()
    starter = threading.Thread(target=start_when_refused)
    starter.start()
    try:
        result = send()
    finally:
        logging.getLogger("pipeline.delivery").removeHandler(watcher)
        starter.join()
    assert watcher.seen.is_set()  # the first connection was refused
    assert result.exit_code == 0, result.output
    assert "The issue is complete." in result.stdout and "waiting: 0." in result.stdout
    assert relay.copies() == Counter(EVERYONE)
    assert set(ledger(env)) == {"sent"} and completed(env)


def test_a_relay_that_goes_away_mid_send_leaves_the_rest_waiting_and_a_rerun_sends_them_once(env, relay, monkeypatch):
    monkeypatch.setenv("PIPELINE_DELIVERY", "smtp")
    monkeypatch.setenv("PIPELINE_SMTP_URL", f"smtp://127.0.0.1:{relay.port}")
    relay.start()
    # From the third message on, the relay drops every connection it accepts, as one going down does. (Stopping
    # the server outright races its own shutdown against the client's reconnect: the first test and the
    # scheduler's cover a relay that refuses connections.)
    relay.handler.down_from_mail = 3
    result = send()
    assert relay.handler.went_down.is_set()
    assert result.exit_code == 1
    assert problems(result) == [
        f"the relay at 127.0.0.1:{relay.port} has not answered for 2 seconds ("
        + result.stderr.split(" seconds (", 1)[1].split(")")[0]
        + f"); {N - 2} recipients are waiting; the next run will send them."]
    assert "The issue is complete." not in result.stdout
    assert "Sent now: 2;" in result.stdout and f"failed: 0; unknown: 0; waiting: {N - 2}." in result.stdout
    rows = ledger(env)
    assert set(rows) == {"sent", "pending"} and len(rows["sent"]) == 2 and len(rows["pending"]) == N - 2
    assert all(reason.startswith(f"the relay at 127.0.0.1:{relay.port} has not answered") for _e, reason in rows["pending"])
    assert not completed(env)
    shown = status()
    assert shown.exit_code == 0
    assert f"{N - 2} waiting: the relay at 127.0.0.1:{relay.port} has not answered for 2 seconds" in shown.stdout
    assert shown.stdout.splitlines()[-1].startswith(f"not complete: {N - 2} waiting;")

    relay.handler.down_from_mail = None  # the relay is back
    result = send()
    assert result.exit_code == 0, result.output
    assert "The issue is complete." in result.stdout and f"Sent now: {N - 2}; sent before: 2;" in result.stdout
    assert relay.copies() == Counter(EVERYONE)  # one copy each
    assert set(ledger(env)) == {"sent"} and completed(env)
    assert status().stdout.splitlines()[-1] == "complete"


def test_an_untrusted_starttls_certificate_stops_at_once_and_the_ca_setting_fixes_it(env, relay, monkeypatch, tmp_path):
    server_ctx, ca_file = smtp_server.private_ca(tmp_path)
    relay.start(tls_context=server_ctx, require_starttls=True)
    monkeypatch.setenv("PIPELINE_DELIVERY", "smtp")
    monkeypatch.setenv("PIPELINE_SMTP_URL", f"smtp://127.0.0.1:{relay.port}?starttls=1")
    monkeypatch.setenv("PIPELINE_RELAY_PATIENCE", "2m")  # a wrong setting must not wait for it
    result = send()
    assert result.exit_code == 1
    first, second = problems(result)
    assert first.startswith(f"PIPELINE_SMTP_CA_FILE: the relay at 127.0.0.1:{relay.port} presented a certificate "
                            "that is not trusted (")
    assert first.endswith("set PIPELINE_SMTP_CA_FILE to the CA bundle that signed it")
    assert second == f"Nobody was marked failed; {N} recipients are waiting; fix the setting and run the send again."
    rows = ledger(env)
    assert set(rows) == {"pending"} and all(r.startswith("PIPELINE_SMTP_CA_FILE") for _e, r in rows["pending"])
    assert relay.copies() == Counter()

    monkeypatch.setenv("PIPELINE_SMTP_CA_FILE", str(ca_file))
    result = send()
    assert result.exit_code == 0, result.output
    assert relay.copies() == Counter(EVERYONE) and set(ledger(env)) == {"sent"}


def test_a_missing_ca_file_is_a_setting_error(env, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_DELIVERY", "smtp")
    monkeypatch.setenv("PIPELINE_SMTP_URL", "smtp://127.0.0.1:25?starttls=1")
    monkeypatch.setenv("PIPELINE_SMTP_CA_FILE", str(tmp_path / "nowhere.pem"))
    result = send()
    assert result.exit_code == 1 and result.stderr.startswith("PIPELINE_SMTP_CA_FILE: ")


def test_a_refused_login_stops_at_once(env, relay, monkeypatch, tmp_path):
    server_ctx, ca_file = smtp_server.private_ca(tmp_path)
    relay.start(tls_context=server_ctx, require_starttls=True, auth_required=True,
                authenticator=smtp_server.authenticator("me", "secret"))
    monkeypatch.setenv("PIPELINE_DELIVERY", "smtp")
    monkeypatch.setenv("PIPELINE_SMTP_URL", f"smtp://me:wrong@127.0.0.1:{relay.port}?starttls=1")
    monkeypatch.setenv("PIPELINE_SMTP_CA_FILE", str(ca_file))
    monkeypatch.setenv("PIPELINE_RELAY_PATIENCE", "2m")
    result = send()
    assert result.exit_code == 1
    assert problems(result)[0] == (f"PIPELINE_SMTP_URL: the relay at 127.0.0.1:{relay.port} refused the "
                                             "user name or password")
    assert "wrong" not in result.output
    assert set(ledger(env)) == {"pending"}


def test_one_recipient_refused_with_550_fails_alone_with_its_reason(env, relay, monkeypatch):
    relay.handler.refuse = frozenset({"reader2@example.org"})
    relay.start()
    monkeypatch.setenv("PIPELINE_DELIVERY", "smtp")
    monkeypatch.setenv("PIPELINE_SMTP_URL", f"smtp://127.0.0.1:{relay.port}")
    result = send()
    assert result.exit_code == 0, result.output
    assert "1 failed: 550 5.1.1 no such user" in result.stdout.splitlines()
    assert "The issue is complete." in result.stdout and problems(result) == []
    rows = ledger(env)
    assert rows["failed"] == [("reader2@example.org", "550 5.1.1 no such user")]
    assert len(rows["sent"]) == N - 1 and completed(env)
    assert relay.copies() == Counter(EVERYONE - {"reader2@example.org"})
    assert "1 failed: 550 5.1.1 no such user" in status().stdout.splitlines()
    # A re-run sends nobody a second copy.
    again = send()
    assert again.exit_code == 0 and relay.copies() == Counter(EVERYONE - {"reader2@example.org"})


# --- SendGrid -------------------------------------------------------------------------------------------------

@pytest.fixture
def sendgrid(env, monkeypatch):
    with SinkServer() as server:
        monkeypatch.setenv("PIPELINE_DELIVERY", "sendgrid")
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key-never-printed")
        monkeypatch.setenv("PIPELINE_SENDGRID_HOST", server.url)
        yield server


def test_sendgrid_answering_503_past_the_patience_leaves_everyone_waiting(env, sendgrid):
    sendgrid.sink.cue(503, times=1000)
    result = send()
    assert result.exit_code == 1
    assert problems(result) == [
        f"SendGrid at {sendgrid.url} (PIPELINE_SENDGRID_HOST) has not answered for 2 seconds (it answered 503); "
        f"{N} recipients are waiting; the next run will send them."]
    assert set(ledger(env)) == {"pending"} and sendgrid.sink.requests > 1
    sendgrid.sink.cues.clear()
    result = send()
    assert result.exit_code == 0, result.output
    assert set(ledger(env)) == {"sent"}
    copies = sendgrid.sink.per_recipient
    assert len(copies) == N and set(copies.values()) == {1}  # one copy each


def test_sendgrid_429_then_202_is_retried_within_the_run(env, sendgrid):
    sendgrid.sink.cue(429, {"Retry-After": "1"})
    sendgrid.sink.cue(500)
    result = send()
    assert result.exit_code == 0, result.output
    assert sendgrid.sink.requests == 3 and set(ledger(env)) == {"sent"}


@pytest.mark.parametrize(("code", "setting"), [(401, "SENDGRID_API_KEY"), (403, "SENDGRID_API_KEY")])
def test_sendgrid_refusing_the_key_stops_before_marking_anyone(env, sendgrid, code, setting):
    sendgrid.sink.cue(code)
    result = send()
    assert result.exit_code == 1
    assert problems(result)[0].startswith(f"{setting}: SendGrid ")
    assert "SG.test-key" not in result.output
    assert set(ledger(env)) == {"pending"} and sendgrid.sink.requests == 1


def test_sendgrid_timeout_stays_unknown_and_is_not_called_complete(env, sendgrid, monkeypatch):
    sendgrid.sink.cue(202, delay=1.5)
    from pipeline.delivery import sendgrid as sg

    original = sg.SendGridBackend.__init__

    def short_timeout(self, *a, **kw):
        kw["timeout"] = 0.3
        original(self, *a, **kw)
    monkeypatch.setattr(sg.SendGridBackend, "__init__", short_timeout)
    result = send()
    assert result.exit_code == 1
    assert "unknown outcome" in result.stderr
    rows = ledger(env)
    assert set(rows) == {"unknown"} and completed(env)
    assert f"{N} unknown: SendGrid did not answer within 0.3s" in result.stdout
