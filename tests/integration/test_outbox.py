"""The outbox: every email that is not a digest is stored with the change that causes it and sent by the sender in
`pipeline run`, with retries, against a real aiosmtpd relay on loopback."""

from __future__ import annotations

import email
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from sqlalchemy import select
from websupport import T0, Clock, Site, make_settings

from pipeline.context import Context
from pipeline.delivery import outbox
from pipeline.delivery.outbox_sender import OutboxSender, backoff
from pipeline.store import tables
from tests.support import smtp_server

FAST = {"first": timedelta(seconds=0.05), "cap": timedelta(seconds=0.3), "poll": 0.02}


def smtp_site(tmp_path, portal, url: str, port: int) -> Site:
    from pipeline.web.app import create_app

    settings = make_settings(tmp_path, url, delivery="smtp", smtp_url=f"smtp://127.0.0.1:{port}",
                             web_rate_limits=False)
    ctx = Context(settings)
    clock = Clock()
    return Site(settings=settings, ctx=ctx, app=create_app(ctx, clock=clock), clock=clock, portal=portal)


@pytest.fixture
def made(portal):
    sites: list[Site] = []
    yield sites
    for s in sites:
        for client in s.clients.values():
            portal.call(client.aclose)
        s.engine.dispose()


def rows(site: Site) -> list:
    with site.engine.connect() as conn:
        return conn.execute(select(tables.outbox).order_by(tables.outbox.c.id)).all()


def recipients(handler: smtp_server.SavingHandler) -> list[str]:
    """The To address of every message the relay saved, parsed from the message itself."""
    with handler.lock:
        saved = list(handler.saved)
    out = []
    for _rcpts, data in saved:
        msg = email.message_from_bytes(data, policy=policy.default)
        out.append(msg["To"].addresses[0].addr_spec)
    return out


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_signup_stores_its_confirmation_and_the_page_sends_nothing(tmp_path, portal, made):
    """The web worker only writes the message with the sign-up: if it died right after the response, the message is
    in the table (no relay is running at all here), and the sender delivers it later."""
    port = smtp_server.free_port()
    site = smtp_site(tmp_path, portal, f"sqlite:///{tmp_path}/web.db", port)
    made.append(site)
    r = site.signup("ana@example.org")
    assert r.status_code == 200 and "sent" in r.page.lower()
    [row] = rows(site)
    assert (row.kind, row.state, row.attempts) == ("confirm", "pending", 0)
    assert row.subscriber_id == site.subscriber("ana@example.org").id and row.signup_request_id is not None
    assert b"/confirm/" in row.message

    handler = smtp_server.SavingHandler(tmp_path / "mail")
    relay = smtp_server.start(handler, port=port)
    try:
        done = OutboxSender(site.engine, site.settings, clock=site.clock).run_once()
    finally:
        relay.stop()
    assert done.sent == 1 and recipients(handler) == ["ana@example.org"]
    [row] = rows(site)
    assert row.state == "sent" and row.message is None, "the sent message's body (address, links) stayed stored"


def test_relay_down_for_a_whole_signup_then_up_delivers_within_the_backoff_cap(tmp_path, portal, made):
    port = smtp_server.free_port()
    site = smtp_site(tmp_path, portal, f"sqlite:///{tmp_path}/web.db", port)
    made.append(site)
    site.clock.at = datetime.now(UTC)  # the sender runs on the real clock here
    sender = OutboxSender(site.engine, site.settings, **FAST).start()
    try:
        assert site.signup("ben@example.org").status_code == 200
        wait_for(lambda: rows(site)[0].attempts >= 3, 10, "three failed tries against the relay that is down")
        assert rows(site)[0].state == "pending" and rows(site)[0].reason.startswith("waiting:")
        handler = smtp_server.SavingHandler(tmp_path / "mail")
        relay = smtp_server.start(handler, port=port)
        try:
            took = wait_for(lambda: recipients(handler), 10, "the confirmation after the relay came back")
        finally:
            relay.stop()
    finally:
        sender.stop()
    assert took < FAST["cap"].total_seconds() + 2.0
    assert recipients(handler) == ["ben@example.org"]
    assert rows(site)[0].state == "sent"


def test_a_550_fails_at_once_with_its_reason_and_no_address(tmp_path, portal, made, caplog):
    handler = smtp_server.SavingHandler(tmp_path / "mail", refuse=frozenset({"gone@example.org"}))
    handler.refusal = "550 5.1.1 <gone@example.org>: no such user here"  # relays often quote the address
    relay = smtp_server.start(handler)
    try:
        site = smtp_site(tmp_path, portal, f"sqlite:///{tmp_path}/web.db", relay.port)
        made.append(site)
        site.signup("gone@example.org")
        with caplog.at_level(logging.DEBUG, logger="pipeline"):
            done = OutboxSender(site.engine, site.settings, clock=site.clock).run_once()
    finally:
        relay.stop()
    assert (done.sent, done.failed, done.retrying) == (0, 1, 0)
    [row] = rows(site)
    assert row.state == "failed" and row.message is None and row.attempts == 1
    assert "550" in row.reason and "gone@example.org" not in row.reason
    assert "gone@example.org" not in caplog.text


def test_a_confirmation_unsent_for_24_hours_is_dropped_with_its_pending_signup(tmp_path, portal, made):
    port = smtp_server.free_port()  # nothing listens: the relay is down all day
    site = smtp_site(tmp_path, portal, f"sqlite:///{tmp_path}/web.db", port)
    made.append(site)
    site.signup("cleo@example.org")
    sender = OutboxSender(site.engine, site.settings, clock=site.clock)
    assert sender.run_once().retrying == 1
    site.clock.advance(hours=23, minutes=59)
    assert sender.run_once().dropped == 0 and site.subscriber("cleo@example.org") is not None
    site.clock.advance(minutes=2)
    done = sender.run_once()
    assert done.dropped == 1 and done.retrying == 0
    [row] = rows(site)
    assert row.state == "dropped" and row.message is None and "24 hours" in row.reason
    assert site.subscriber("cleo@example.org") is None, "the pending sign-up stayed after its confirmation was dropped"
    with site.engine.connect() as conn:
        assert conn.execute(select(tables.signup_requests)).all() == []
    # Nothing stale goes out even when the relay is back.
    handler = smtp_server.SavingHandler(tmp_path / "mail")
    relay = smtp_server.start(handler, port=port)
    try:
        assert sender.run_once().sent == 0 and recipients(handler) == []
    finally:
        relay.stop()


def test_a_dropped_confirmation_leaves_a_subscriber_that_something_else_keeps(tmp_path, portal, made):
    """Only a pending sign-up goes with its stale confirmation: a newer sign-up request for the address stays."""
    site = smtp_site(tmp_path, portal, f"sqlite:///{tmp_path}/web.db", smtp_server.free_port())
    made.append(site)
    site.signup("dora@example.org")
    site.clock.advance(hours=2)
    site.signup("dora@example.org")  # a second request an hour later: its own confirmation
    site.clock.advance(hours=22, minutes=30)
    done = OutboxSender(site.engine, site.settings, clock=site.clock).run_once()
    assert done.dropped == 1
    assert site.subscriber("dora@example.org") is not None
    assert [r.state for r in rows(site)] == ["dropped", "pending"]


def test_backoff_doubles_from_the_first_delay_and_is_capped():
    first, cap = timedelta(seconds=10), timedelta(seconds=60)
    assert backoff(1, first=first, cap=cap, rng=lambda: 1.0) == first
    assert backoff(1, first=first, cap=cap, rng=lambda: 0.0) == first / 2
    assert backoff(3, first=first, cap=cap, rng=lambda: 1.0) == timedelta(seconds=40)
    assert backoff(30, first=first, cap=cap, rng=lambda: 1.0) == cap


def test_two_senders_never_send_one_message_twice(db_url, tmp_path):
    from pipeline.store.engine import make_engine

    handler = smtp_server.SavingHandler(tmp_path / "mail")
    relay = smtp_server.start(handler)
    engines = [make_engine(db_url), make_engine(db_url)]
    try:
        settings = make_settings(tmp_path, db_url, delivery="smtp", smtp_url=f"smtp://127.0.0.1:{relay.port}")
        with engines[0].begin() as conn:
            for i in range(120):
                msg = email.message.EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = "news@example.org", f"r{i}@example.org", "Hello"
                msg["X-Pipeline-Kind"] = "confirm"
                msg.set_content("hello")
                outbox.enqueue(conn, msg, at=T0)
        # A small batch, so the two interleave their claims many times.
        senders = [OutboxSender(e, settings, clock=lambda: T0 + timedelta(minutes=1), batch=3) for e in engines]
        go = threading.Barrier(2)
        results = []

        def work(s):
            go.wait()
            results.append(s.run_once())

        threads = [threading.Thread(target=work, args=(s,)) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        relay.stop()
        for e in engines:
            e.dispose()
    got = recipients(handler)
    assert sorted(got) == sorted(f"r{i}@example.org" for i in range(120)), "a message was lost or sent twice"
    assert sum(r.sent for r in results) == 120
    assert all(r.sent > 0 for r in results), "one sender did all the work: the test proved nothing about claims"


class FlakyRelay(smtp_server.SavingHandler):
    """Drops 30% of connections (at MAIL), answers 421 to 10% of messages (at the end of DATA, nothing saved), and
    drops every connection while ``down`` is set."""

    def __init__(self, outdir, *, seed: int):
        super().__init__(outdir)
        import random

        self.rng = random.Random(seed)
        self.down = threading.Event()
        self.dropped = self.busy = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        with self.lock:
            drop = self.down.is_set() or self.rng.random() < 0.30
            self.dropped += drop
        if drop:
            server.transport.close()
            return "421 closing"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            busy = self.rng.random() < 0.10
            self.busy += busy
        if busy:
            return "421 4.3.0 busy, try again later"
        return await super().handle_DATA(server, session, envelope)


def test_200_signups_through_a_flaky_relay_each_get_one_confirmation(tmp_path, portal, made):
    handler = FlakyRelay(tmp_path / "mail", seed=14)
    relay = smtp_server.start(handler)
    site = smtp_site(tmp_path, portal, f"sqlite:///{tmp_path}/web.db", relay.port)
    made.append(site)
    site.clock.at = datetime.now(UTC)
    sender = OutboxSender(site.engine, site.settings, **FAST).start()
    addresses = [f"reader{i:03d}@example.org" for i in range(200)]
    started = time.monotonic()
    try:
        for i, address in enumerate(addresses):
            if i == 80:
                handler.down.set()  # the relay goes away for a stretch of 50 sign-ups
            elif i == 130:
                handler.down.clear()
            r = site.signup(address, ip=f"192.0.2.{i % 200 + 1}")
            assert r.status_code == 200 and "check your inbox" in r.page.lower(), r.page
        try:
            wait_for(lambda: len(recipients(handler)) >= 200 and all(row.state == "sent" for row in rows(site)), 45,
                     "every confirmation")
        except AssertionError:
            with site.engine.connect() as conn:
                st = outbox.status(conn)
            raise AssertionError(f"{len(recipients(handler))} arrived; outbox {st.counts}, {st.reasons}") from None
    finally:
        sender.stop()
        relay.stop()
    elapsed = time.monotonic() - started
    got = recipients(handler)
    from collections import Counter

    per_address = Counter(got)
    assert set(per_address) == set(addresses), "a confirmation was lost"
    assert max(per_address.values()) == 1, f"sent twice: {[a for a, n in per_address.items() if n > 1]}"
    attempts = sum(row.attempts for row in rows(site))
    print(f"\n200 sign-ups: {len(got)} confirmations, {handler.dropped} connections dropped, {handler.busy} answered "
          f"421, {attempts} tries in all, {elapsed:.1f}s from the first sign-up to the last delivery")
    assert handler.dropped > 60 and handler.busy > 5, "the relay was not flaky enough to prove anything"


def test_deleting_a_subscribers_data_drops_what_waits_for_them(tmp_path, portal, made):
    from pipeline.subscribers import lifecycle, repository

    site = smtp_site(tmp_path, portal, f"sqlite:///{tmp_path}/web.db", smtp_server.free_port())
    made.append(site)
    site.signup("hal@example.org")
    sub_id = site.subscriber("hal@example.org").id
    with site.engine.begin() as conn:
        lifecycle.delete_data(conn, repository.get(conn, sub_id))
    [row] = rows(site)
    assert row.state == "dropped" and row.message is None
