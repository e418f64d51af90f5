"""The Event Webhook as the running app serves it: mounted, outside CSRF, and verified."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from pipeline.context import Context
from pipeline.store.tables import suppressions
from pipeline.subscribers import repository
from pipeline.web.app import create_app
from tests.integration.test_sendgrid_webhook import keypair, sign
from tests.integration.websupport import make_settings
from tests.support.asgi import AsgiClient


def test_signed_spam_report_through_the_app_suppresses_and_unsigned_changes_nothing(tmp_path):
    now = datetime.now(UTC)
    private, public = keypair()
    ctx = Context(make_settings(tmp_path, f"sqlite:///{tmp_path}/web.db", sendgrid_webhook_public_key=public))
    with ctx.engine.begin() as conn:
        sid, _ = repository.upsert(conn, email="reader@example.org", name="", topics=(), cadence="weekly",
                                   timezone="UTC", at=now, status="confirmed", consent_source="test")
    client = AsgiClient(create_app(ctx, clock=lambda: now))
    body = json.dumps([{"email": "reader@example.org", "timestamp": int(now.timestamp()), "event": "spamreport",
                        "sg_event_id": "evt-1", "mbc_rid": str(sid)}]).encode()
    try:
        unsigned = client.post("/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401
        with ctx.engine.connect() as conn:
            assert conn.execute(select(suppressions)).first() is None
        signed = client.post("/webhooks/sendgrid", content=body, headers=sign(private, body, now))
        assert signed.status_code == 200, signed.text
        with ctx.engine.connect() as conn:
            assert [(r.email_key, r.reason) for r in conn.execute(select(suppressions))] == [
                ("reader@example.org", "spamreport")]
    finally:
        ctx.close()
