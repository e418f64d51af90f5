"""SendGrid Event Webhook: verify a signed batch of events, then apply it to the suppression list and ledger.

SendGrid signs ``timestamp + raw body`` with ECDSA (P-256, SHA-256) and sends the signature, base64 DER, in
``X-Twilio-Email-Event-Webhook-Signature``. Each event carries the personalization's ``custom_args`` as
top-level keys, so ``mbc_issue`` and ``mbc_rid`` lead back to the ledger row without trusting an address.
Events are deduplicated by ``sg_event_id``: SendGrid retries deliveries and may send one event twice.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pipeline.delivery.sendgrid_spec import ARG_ISSUE, ARG_RECIPIENT
from pipeline.errors import ConfigError
from pipeline.store.tables import deliveries as t_del
from pipeline.store.tables import subscribers as t_sub
from pipeline.store.tables import webhook_events as t_evt
from pipeline.subscribers import repository

log = logging.getLogger("pipeline.delivery.events")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = timedelta(minutes=10)
# Events that stop all further mail to the address. A spam report stays distinct from a bounce.
SUPPRESSING = frozenset({"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"})
# Events that only tell the ledger how a message fared.
LEDGER_ONLY = frozenset({"processed", "delivered", "deferred"})



class SignatureError(Exception):
    """The request is not provably from SendGrid. ``status`` is 401 (unsigned) or 403 (bad or stale)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The key from SendGrid's settings page: base64 DER (SubjectPublicKeyInfo), or PEM."""
    try:
        text = value.strip()
        key = (load_pem_public_key(text.encode()) if text.startswith("-----BEGIN")
               else load_der_public_key(base64.b64decode(text, validate=True)))
    except (ValueError, binascii.Error, TypeError):
        raise ConfigError("PIPELINE_SENDGRID_WEBHOOK_PUBLIC_KEY: not a base64 public key; copy the "
                          "'Verification Key' from SendGrid's Event Webhook settings") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("PIPELINE_SENDGRID_WEBHOOK_PUBLIC_KEY: not an ECDSA key")
    return key


def verify(key: ec.EllipticCurvePublicKey, *, signature: str | None, timestamp: str | None, body: bytes,
           now: datetime) -> None:
    """Raise SignatureError unless ``signature`` signs ``timestamp + body`` and the timestamp is fresh."""
    if not signature or not timestamp:
        raise SignatureError(401, "unsigned request")
    try:
        sent = datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError):
        raise SignatureError(403, "bad timestamp") from None
    if abs(now - sent) > MAX_AGE:
        raise SignatureError(403, "stale timestamp")
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode("ascii") + body,
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        raise SignatureError(403, "bad signature") from None


@dataclass(frozen=True, kw_only=True)
class Applied:
    events: int
    duplicates: int
    suppressed: int
    ledger_updates: int
    ignored: int

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "duplicates": self.duplicates, "suppressed": self.suppressed,
                "ledger_updates": self.ledger_updates, "ignored": self.ignored}


def _int(value) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _event_time(event: Mapping, fallback: datetime) -> datetime:
    ts = _int(event.get("timestamp"))
    if ts is None:
        return fallback
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return fallback


def _detail(event: Mapping) -> str:
    """A short, address-free note: SMTP status and bounce classification, never the server's free text."""
    parts = [str(event.get(k))[:40] for k in ("type", "status", "bounce_classification") if event.get(k)]
    return " ".join(p for p in parts if "@" not in p)


def apply_events(engine: Engine, events: Iterable[Mapping], *, at: datetime) -> Applied:
    """Apply a verified batch in one transaction: suppress, update the ledger, remember each event id."""
    tally: Counter = Counter()
    with engine.begin() as conn:
        for event in events:
            if not isinstance(event, Mapping):
                tally["ignored"] += 1
                continue
            tally["events"] += 1
            kind = str(event.get("event") or "")[:40]
            event_id = str(event.get("sg_event_id") or "")[:128]
            if not event_id or not kind:
                tally["ignored"] += 1
                continue
            if not _remember(conn, event_id, kind, at):
                tally["duplicates"] += 1
                continue
            _apply_one(conn, event, kind, at, tally)
    applied = Applied(events=tally["events"], duplicates=tally["duplicates"], suppressed=tally["suppressed"],
                      ledger_updates=tally["ledger_updates"], ignored=tally["ignored"])
    log.info("webhook events applied", extra={"action": "webhook_events_applied", **applied.as_dict()})
    return applied


def _remember(conn: Connection, event_id: str, kind: str, at: datetime) -> bool:
    if conn.execute(select(t_evt.c.event_id).where(t_evt.c.event_id == event_id)).first():
        return False
    try:
        with conn.begin_nested():
            conn.execute(insert(t_evt).values(event_id=event_id, event=kind, received_at=at))
    except IntegrityError:
        return False  # a concurrent delivery of the same event won
    return True


def _apply_one(conn: Connection, event: Mapping, kind: str, at: datetime, tally: Counter) -> None:
    subscriber_id = _int(event.get(ARG_RECIPIENT))
    issue_id = _int(event.get(ARG_ISSUE))
    when = _event_time(event, at)
    blocked = kind == "bounce" and event.get("type") == "blocked"  # a temporary refusal, not a dead address
    if kind in SUPPRESSING and not blocked:
        email = None
        if subscriber_id is not None:
            email = conn.execute(select(t_sub.c.email).where(t_sub.c.id == subscriber_id)).scalar()
        email = email or (str(event.get("email") or "") or None)
        if email and repository.suppress(conn, email=email, reason=kind, at=when, source="sendgrid",
                                         detail=_detail(event)):
            tally["suppressed"] += 1
    elif kind not in LEDGER_ONLY and not blocked:
        tally["ignored"] += 1
        return
    if issue_id is None or subscriber_id is None:
        return
    where = (t_del.c.issue_id == issue_id, t_del.c.subscriber_id == subscriber_id)
    values: dict = {"provider_status": ("blocked" if blocked else kind)}
    if kind in ("processed", "delivered"):
        # Proof that SendGrid took the message: an unknown or interrupted send did in fact go out.
        changed = conn.execute(update(t_del).where(*where, t_del.c.state.in_(("unknown", "in_flight")))
                               .values(state="sent", sent_at=when, email=None, **values)).rowcount
        if changed:
            tally["ledger_updates"] += changed
            return
    tally["ledger_updates"] += conn.execute(update(t_del).where(*where).values(**values)).rowcount
