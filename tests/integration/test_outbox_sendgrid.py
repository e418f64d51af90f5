"""The outbox sender against a real HTTP server standing in for SendGrid: 429 and Retry-After are honoured, a 4xx
other than 429 fails at once, and a bad API key waits for the operator without spending the message's tries."""

from __future__ import annotations

import email
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select
from websupport import T0, Clock, make_settings

from pipeline.delivery import outbox
from pipeline.delivery.outbox_sender import OutboxSender, scrub
from pipeline.store import tables
from pipeline.store.engine import make_engine
from tests.support.sendgrid_sink import SinkServer


@pytest.fixture
def world(tmp_path):
    with SinkServer() as server:
        settings = make_settings(tmp_path, f"sqlite:///{tmp_path}/o.db", delivery="sendgrid",
                                 sendgrid_api_key="SG.outbox-test", sendgrid_host=server.url)
        engine = make_engine(settings.database_url)
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "news@example.org", "fay@example.org", "Welcome"
        msg["X-Pipeline-Kind"] = "welcome"
        msg.set_content("hello")
        with engine.begin() as conn:
            outbox.enqueue(conn, msg, at=T0)
        clock = Clock(T0)
        yield server.sink, engine, OutboxSender(engine, settings, clock=clock, rng=lambda: 1.0), clock
        engine.dispose()


def row(engine):
    with engine.connect() as conn:
        return conn.execute(select(tables.outbox)).one()


def test_a_429_waits_as_long_as_retry_after_asks(world):
    sink, engine, sender, clock = world
    sink.cue(429, {"Retry-After": "120"})
    assert sender.run_once().retrying == 1
    r = row(engine)
    assert r.state == "pending" and r.attempts == 1 and r.due_at >= T0 + timedelta(seconds=120)
    clock.advance(seconds=100)
    assert sender.run_once().handled == 0 and sink.accepted == 0, "tried again before Retry-After had passed"
    clock.advance(seconds=21)
    assert sender.run_once().sent == 1 and sink.accepted == 1
    assert row(engine).state == "sent" and row(engine).message is None


def test_a_429_without_retry_after_is_tried_again_within_30_seconds(world):
    sink, engine, sender, clock = world
    sink.cue(429)
    sender.run_once()
    assert row(engine).due_at <= T0 + timedelta(seconds=30)


def test_a_400_fails_at_once_with_its_reason(world):
    sink, engine, sender, _clock = world
    sink.cue(400)
    done = sender.run_once()
    assert (done.failed, done.retrying) == (1, 0)
    r = row(engine)
    assert r.state == "failed" and "400" in r.reason and r.message is None


def test_a_bad_api_key_keeps_the_message_and_names_the_setting(world, caplog):
    sink, engine, sender, clock = world
    sink.cue(401, times=3)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        sender.run_once()
        clock.advance(minutes=5)
        sender.run_once()
    r = row(engine)
    assert r.state == "pending" and r.attempts == 0, "a setting's fault spent the message's tries"
    assert "SENDGRID_API_KEY" in r.reason
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "SENDGRID_API_KEY" in errors[0].getMessage()
    assert "fay@example.org" not in caplog.text
    clock.advance(minutes=5)
    sink.cues.clear()
    assert sender.run_once().sent == 1


def test_reasons_are_stored_without_addresses():
    msg = email.message.EmailMessage()
    msg["To"] = "Gil <gil@example.org>"
    assert scrub("refused gil@example.org and other@example.net", msg) == "refused <recipient> and <address>"
