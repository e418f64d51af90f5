"""The outbox: every email that is not a digest, stored in the same transaction as the change that causes it.

A web page never talks to a relay: it calls ``enqueue`` inside the transaction that signs someone up (or confirms,
or reports a death), so the message exists exactly when the change does. The sender (pipeline.delivery.outbox_sender)
claims due messages with a lease and sends them. States: pending -> sent | failed | dropped; the stored message
(address and signed links) is cleared when it leaves pending.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import parseaddr

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from pipeline.delivery.mime import needs_smtputf8
from pipeline.store import tables

t_out = tables.outbox
t_sub = tables.subscribers
t_req = tables.signup_requests
STATES = ("pending", "sent", "failed", "dropped")
REASON_MAX = 300


@dataclass(frozen=True, kw_only=True)
class Claimed:
    id: int
    kind: str
    attempts: int
    created_at: datetime
    token: str
    message: EmailMessage


def enqueue(conn: Connection, msg: EmailMessage, *, at: datetime, subscriber_id: int | None = None,
            signup_request_id: int | None = None) -> int:
    """Store ``msg`` to be sent as soon as a sender is free. Call it inside the change's own transaction."""
    kind = str(msg["X-Pipeline-Kind"] or "other")[:32]
    return conn.execute(t_out.insert().values(
        kind=kind, state="pending", message=msg.as_bytes(), subscriber_id=subscriber_id,
        signup_request_id=signup_request_id, created_at=at, due_at=at, attempts=0,
    ).returning(t_out.c.id)).scalar_one()


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=default)
    to = parseaddr(str(msg["To"] or ""))[1]
    if needs_smtputf8(to):
        msg = message_from_bytes(raw, policy=default.clone(utf8=True))
    return msg


def claim(engine: Engine, *, now: datetime, lease: timedelta, limit: int, due_only: bool = True,
          skip: frozenset[int] = frozenset()) -> list[Claimed]:
    """Take up to ``limit`` due messages for this sender until ``now + lease``. On PostgreSQL the rows are picked
    with FOR UPDATE SKIP LOCKED, so two senders never wait on or take the same one; on SQLite BEGIN IMMEDIATE
    serialises claims. The guarded UPDATE makes a claim hold on either even if a pick raced. ``due_only=False``
    takes messages waiting for a retry too (an operator's `outbox send`); ``skip``: ids this pass has tried."""
    token = secrets.token_hex(16)
    with engine.begin() as conn:
        pick = (select(t_out.c.id).where(t_out.c.state == "pending",
                                         or_(t_out.c.lease_until.is_(None), t_out.c.lease_until < now))
                .order_by(t_out.c.due_at, t_out.c.id).limit(limit))
        if due_only:
            pick = pick.where(t_out.c.due_at <= now)
        if skip:
            pick = pick.where(t_out.c.id.not_in(sorted(skip)))
        if conn.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        ids = list(conn.execute(pick).scalars())
        if not ids:
            return []
        conn.execute(update(t_out).where(
            t_out.c.id.in_(ids), t_out.c.state == "pending",
            or_(t_out.c.lease_until.is_(None), t_out.c.lease_until < now),
        ).values(lease_until=now + lease, lease_token=token))
        rows = conn.execute(select(t_out.c.id, t_out.c.kind, t_out.c.attempts, t_out.c.created_at, t_out.c.message)
                            .where(t_out.c.id.in_(ids), t_out.c.lease_token == token).order_by(t_out.c.id)).all()
    return [Claimed(id=r.id, kind=r.kind, attempts=r.attempts, created_at=r.created_at, token=token,
                    message=parse(r.message)) for r in rows]


def anything_pending(engine: Engine) -> bool:
    """A read that takes no write lock: an idle sender polls with this, so on SQLite it never queues behind (or
    holds up) a page's write while there is nothing to send."""
    with engine.connect().execution_options(read_only=True) as conn:
        return conn.execute(select(t_out.c.id).where(t_out.c.state == "pending").limit(1)).first() is not None


def _mine(c: Claimed):
    return and_(t_out.c.id == c.id, t_out.c.lease_token == c.token, t_out.c.state == "pending")


def finish(engine: Engine, c: Claimed, state: str, *, at: datetime, reason: str | None = None) -> bool:
    """Mark a claimed message sent or failed, clearing its body. False if the claim was lost meanwhile."""
    with engine.begin() as conn:
        return conn.execute(update(t_out).where(_mine(c)).values(
            state=state, message=None, finished_at=at, lease_until=None, lease_token=None,
            attempts=t_out.c.attempts + 1, reason=reason[:REASON_MAX] if reason else None)).rowcount == 1


def retry_later(engine: Engine, c: Claimed, *, due: datetime, reason: str, count: bool = True) -> None:
    """Leave a claimed message pending until ``due``. ``count``: whether this try counts as an attempt (a setting
    that is wrong is not the message's fault)."""
    values = {"due_at": due, "lease_until": None, "lease_token": None, "reason": reason[:REASON_MAX]}
    if count:
        values["attempts"] = t_out.c.attempts + 1
    with engine.begin() as conn:
        conn.execute(update(t_out).where(_mine(c)).values(**values))


def drop_stale(engine: Engine, *, now: datetime, max_age: timedelta) -> int:
    """Drop every pending message older than ``max_age``, never sending a stale one. A confirmation goes together
    with its sign-up request, and with its subscriber if that is still pending and nothing else keeps it."""
    cutoff = now - max_age
    with engine.begin() as conn:
        stale = conn.execute(select(t_out.c.id, t_out.c.kind, t_out.c.subscriber_id, t_out.c.signup_request_id)
                             .where(t_out.c.state == "pending", t_out.c.created_at < cutoff,
                                    or_(t_out.c.lease_until.is_(None), t_out.c.lease_until < now))).all()
        if not stale:
            return 0
        conn.execute(update(t_out).where(t_out.c.id.in_([r.id for r in stale])).values(
            state="dropped", message=None, finished_at=now, lease_until=None, lease_token=None,
            reason=f"not sent within {_hours(max_age)}"))
        for r in stale:
            if r.kind != "confirm" or r.signup_request_id is None:
                continue
            conn.execute(delete(t_req).where(t_req.c.id == r.signup_request_id))
            if r.subscriber_id is None:
                continue
            others = or_(
                exists().where(t_req.c.subscriber_id == r.subscriber_id),
                exists().where(t_out.c.subscriber_id == r.subscriber_id, t_out.c.state.in_(("pending", "sent")),
                               t_out.c.kind == "confirm"))
            conn.execute(delete(t_sub).where(t_sub.c.id == r.subscriber_id, t_sub.c.status == "pending", ~others))
    return len(stale)


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours" if hours >= 1 else f"{span.total_seconds():g} seconds"


def forget_subscriber(conn: Connection, subscriber_id: int, *, at: datetime) -> None:
    """A subscriber's data is deleted: what waits for them is dropped, and its body with it."""
    conn.execute(update(t_out).where(t_out.c.subscriber_id == subscriber_id, t_out.c.state == "pending").values(
        state="dropped", message=None, finished_at=at, lease_until=None, lease_token=None,
        reason="the subscriber's data was deleted"))


@dataclass(frozen=True, kw_only=True)
class Status:
    counts: dict[str, int]
    oldest_pending: datetime | None
    reasons: list[tuple[str, str, int]]  # (state, reason, count) for failed, dropped and waiting messages

    def oldest_age(self, now: datetime) -> float | None:
        return None if self.oldest_pending is None else max(0.0, (now - self.oldest_pending).total_seconds())


def status(conn: Connection) -> Status:
    counts = dict.fromkeys(STATES, 0)
    for state, n in conn.execute(select(t_out.c.state, func.count()).group_by(t_out.c.state)):
        counts[state] = n
    oldest = conn.execute(select(func.min(t_out.c.created_at)).where(t_out.c.state == "pending")).scalar()
    reasons = [(r.state, r.reason, r.n) for r in conn.execute(
        select(t_out.c.state, t_out.c.reason, func.count().label("n"))
        .where(t_out.c.state.in_(("failed", "dropped", "pending")), t_out.c.reason.is_not(None))
        .group_by(t_out.c.state, t_out.c.reason).order_by(func.count().desc()))]
    return Status(counts=counts, oldest_pending=oldest, reasons=reasons)


def next_due(conn: Connection) -> datetime | None:
    return conn.execute(select(func.min(t_out.c.due_at)).where(t_out.c.state == "pending")).scalar()
