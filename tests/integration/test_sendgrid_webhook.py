from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from starlette.applications import Starlette

from pipeline.settings import Settings
from pipeline.store.engine import make_engine
from pipeline.store.tables import deliveries, suppressions, webhook_events
from pipeline.subscribers import repository
from pipeline.web import webhooks
from tests.support.asgi import AsgiClient
from tests.support.db import add_issue, add_subscribers

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def keypair():
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def sign(private, body: bytes, at: datetime = NOW) -> dict[str, str]:
    ts = str(int(at.timestamp()))
    sig = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts, "Content-Type": "application/json"}


@pytest.fixture
def world(db_url):
    engine = make_engine(db_url)
    ids = add_subscribers(engine, 5)
    issue_id = add_issue(engine, ids)
    private, public = keypair()
    ctx = SimpleNamespace(settings=Settings(sendgrid_webhook_public_key=public, secret_key="k"), engine=engine)
    app = Starlette(routes=webhooks.routes(ctx, clock=lambda: NOW))
    yield SimpleNamespace(engine=engine, issue_id=issue_id, private=private, client=AsgiClient(app), ids=ids)
    engine.dispose()


def event(kind: str, sid: int, issue_id: int, n: int = 0, **extra) -> dict:
    return {"email": f"reader{sid}@example.org", "timestamp": int(NOW.timestamp()) - 60, "event": kind,
            "sg_event_id": f"evt-{kind}-{sid}-{n}", "sg_message_id": "m.1", "mbc_issue": str(issue_id),
            "mbc_rid": str(sid), **extra}


def post(world, events, *, headers=None, at=NOW):
    body = json.dumps(events).encode()
    return world.client.post("/webhooks/sendgrid", content=body,
                                   headers=headers if headers is not None else sign(world.private, body, at))


def suppressed(world) -> dict[str, str]:
    with world.engine.connect() as conn:
        return {r.email_key: r.reason for r in conn.execute(select(suppressions))}


def ledger(world) -> dict[int, tuple[str, str | None]]:
    with world.engine.connect() as conn:
        return {r.subscriber_id: (r.state, r.provider_status) for r in conn.execute(select(deliveries))}


def test_bounces_spam_reports_and_unsubscribes_suppress_with_their_reason(world):
    i = world.issue_id
    resp = post(world, [event("bounce", 1, i, type="bounce", status="5.1.1"), event("spamreport", 2, i),
                              event("dropped", 3, i), event("group_unsubscribe", 4, i)])
    assert resp.status_code == 200 and resp.json()["suppressed"] == 4
    assert suppressed(world) == {"reader1@example.org": "bounce", "reader2@example.org": "spamreport",
                                 "reader3@example.org": "dropped", "reader4@example.org": "group_unsubscribe"}
    with world.engine.connect() as conn:
        row = conn.execute(select(suppressions).where(suppressions.c.email_key == "reader1@example.org")).one()
        assert row.source == "sendgrid" and "5.1.1" in row.detail
        assert row.created_at == NOW - timedelta(seconds=60)
        assert repository.still_mailable_ids(conn, world.ids, at=NOW) == {5}


def test_delivered_and_deferred_update_the_ledger(world):
    i = world.issue_id
    with world.engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.subscriber_id == 1).values(state="unknown"))
        conn.execute(deliveries.update().where(deliveries.c.subscriber_id == 2).values(state="sent"))
    resp = post(world, [event("delivered", 1, i), event("deferred", 2, i)])
    assert resp.status_code == 200
    rows = ledger(world)
    assert rows[1] == ("sent", "delivered")  # an unknown outcome is resolved by the provider's word
    assert rows[2] == ("sent", "deferred")
    assert suppressed(world) == {}


def test_events_are_applied_once(world):
    batch = [event("spamreport", 2, world.issue_id)]
    first = post(world, batch)
    again = post(world, batch)
    assert first.json()["suppressed"] == 1 and again.json()["duplicates"] == 1
    with world.engine.connect() as conn:
        assert len(conn.execute(select(webhook_events)).all()) == 1


def test_unsigned_request_is_401_and_changes_nothing(world):
    resp = post(world, [event("bounce", 1, world.issue_id)], headers={"Content-Type": "application/json"})
    assert resp.status_code == 401 and suppressed(world) == {}


def test_badly_signed_request_is_403_and_changes_nothing(world):
    good = json.dumps([event("bounce", 1, world.issue_id)]).encode()
    headers = sign(world.private, good)
    tampered = json.dumps([event("bounce", 2, world.issue_id)]).encode()
    resp = world.client.post("/webhooks/sendgrid", content=tampered, headers=headers)
    assert resp.status_code == 403 and suppressed(world) == {}
    other, _ = keypair()
    resp = world.client.post("/webhooks/sendgrid", content=good, headers=sign(other, good))
    assert resp.status_code == 403 and suppressed(world) == {}


def test_stale_timestamp_is_403(world):
    resp = post(world, [event("bounce", 1, world.issue_id)], at=NOW - timedelta(minutes=11))
    assert resp.status_code == 403 and suppressed(world) == {}
    resp = post(world, [event("bounce", 1, world.issue_id)], at=NOW - timedelta(minutes=9))
    assert resp.status_code == 200


def test_event_without_custom_args_matches_by_address(world):
    resp = post(world, [{"email": "Reader5@Example.org", "event": "unsubscribe", "sg_event_id": "x1",
                               "timestamp": int(NOW.timestamp())}])
    assert resp.status_code == 200 and suppressed(world) == {"reader5@example.org": "unsubscribe"}


def test_blocked_bounce_is_not_a_dead_address(world):
    resp = post(world, [event("bounce", 1, world.issue_id, type="blocked")])
    assert resp.status_code == 200 and suppressed(world) == {}
    assert ledger(world)[1] == ("pending", "blocked")


def test_not_configured_is_503(world, db_url):
    ctx = SimpleNamespace(settings=Settings(secret_key="k"), engine=world.engine)
    app = Starlette(routes=webhooks.routes(ctx, clock=lambda: NOW))
    resp = AsgiClient(app).post("/webhooks/sendgrid", content=b"[]")
    assert resp.status_code == 503


def test_malformed_body_is_400(world):
    body = b'{"not": "a list"}'
    resp = world.client.post("/webhooks/sendgrid", content=body, headers=sign(world.private, body))
    assert resp.status_code == 400


def test_verified_events_are_counted_by_type_and_an_unknown_type_is_other(world):
    from prometheus_client.parser import text_string_to_metric_families

    from pipeline import metrics

    def counts() -> dict[str, float]:
        return {s.labels["type"]: s.value for f in text_string_to_metric_families(metrics.exposition().decode())
                for s in f.samples if s.name == "pipeline_webhook_events_total"}

    before = counts()
    batch = [event("bounce", world.ids[0], world.issue_id), event("delivered", world.ids[1], world.issue_id),
             event("reader9@example.org", world.ids[2], world.issue_id)]
    assert post(world, batch).status_code == 200
    assert post(world, batch, headers=sign(world.private, b"[]")).status_code != 200  # unverified: not counted
    after = counts()
    assert after["bounce"] - before.get("bounce", 0) == 1
    assert after["delivered"] - before.get("delivered", 0) == 1
    assert after["other"] - before.get("other", 0) == 1
    assert not [label for label in after if "@" in label]
