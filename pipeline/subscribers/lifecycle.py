"""The subscriber lifecycle: sign up, confirm, change preferences, pause, leave, and the subscriber's own data.

Each function is a decision plus a write inside the caller's transaction, and returns a value that says what
happened and what (if anything) must be sent. Nothing here sends mail or reads the clock: ``at`` is a parameter.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from pipeline.delivery import outbox
from pipeline.store.tables import deliveries as t_del
from pipeline.store.tables import issues as t_iss
from pipeline.store.tables import signup_requests as t_req
from pipeline.store.tables import subscriber_changes as t_changes
from pipeline.store.tables import subscribers as t_sub
from pipeline.subscribers import repository
from pipeline.subscribers.model import CADENCES, Subscriber, email_key, join_topics, split_topics
from pipeline.subscribers.tokens import TokenClaims

CONFIRM_MAX_AGE = timedelta(days=7)
CONFIRMATION_INTERVAL = timedelta(hours=1)
PAUSE_WEEKS = (4, 8, 12)
WEB_CONSENT_SOURCE = "web-double-opt-in"
# Suppressions that a web form made. Confirming a new sign-up lifts them; nothing lifts a bounce's or a spam
# report's but an operator (``suppressions remove``).
WEB_SUPPRESSION_SOURCE = "web"
LIFTABLE_SOURCES = frozenset({WEB_SUPPRESSION_SOURCE})
STOP_MAX_AGE = timedelta(days=30)


@dataclass(frozen=True, kw_only=True)
class SignupOutcome:
    """``send_confirmation`` is set when a confirmation email is due; otherwise nothing is sent.

    ``request_id`` names the sign-up request whose choices the confirmation link applies.
    """

    result: str  # created | updated | resent-too-soon | already-confirmed | suppressed | missing
    subscriber: Subscriber | None = None
    send_confirmation: bool = False
    # A confirmed subscriber who signs up again gets a note with their preferences link instead.
    send_reminder: bool = False
    request_id: int | None = None

    @property
    def queued(self) -> bool:
        """Whether an email is due: the page may say one was sent only then."""
        return self.send_confirmation or self.send_reminder


@dataclass(frozen=True, kw_only=True)
class ConfirmOutcome:
    result: str  # confirmed | already-confirmed | missing | suppressed
    subscriber: Subscriber | None = None

    @property
    def send_welcome(self) -> bool:
        return self.result == "confirmed"


@dataclass(frozen=True, kw_only=True)
class SignupRequest:
    """What one sign-up asked for; its confirmation link applies exactly this."""

    id: int
    subscriber_id: int
    name: str
    topics: tuple[str, ...]
    cadence: str
    timezone: str


def _row_id(conn: Connection, key: str):
    return conn.execute(select(t_sub.c.id, t_sub.c.status, t_sub.c.confirmation_sent_at)
                        .where(t_sub.c.email_key == key)).first()


def _blocking_suppression(conn: Connection, email: str):
    """The suppression that stops a sign-up, or None. A web form's can be lifted by the inbox's owner confirming."""
    row = repository.suppression_of(conn, email)
    if row is None or row.source in LIFTABLE_SOURCES:
        return None
    return row


def _new_request(conn: Connection, subscriber_id: int, *, name: str, topics: tuple[str, ...], cadence: str,
                 timezone: str, at: datetime) -> int:
    return conn.execute(insert(t_req).values(
        subscriber_id=subscriber_id, name=name.strip()[:200], topics=join_topics(topics), cadence=cadence,
        timezone=timezone, created_at=at).returning(t_req.c.id)).scalar_one()


def subscribe(conn: Connection, *, email: str, name: str, topics: tuple[str, ...], cadence: str, timezone: str,
              at: datetime) -> SignupOutcome:
    """Record a web sign-up request and decide whether a confirmation email is due.

    - An address suppressed by a bounce, a spam report or an operator is never written to nor mailed. One that a
      web form suppressed gets a confirmation: confirming proves the inbox is in use, and lifts it.
    - A confirmed subscriber's choices are not changed by a stranger typing their address; they get a short
      "you're already subscribed" note with their preferences link, at most once per hour.
    - Nothing here changes a pending or unsubscribed subscriber's choices: each request keeps its own, and only its
      own confirmation link applies them. At most one confirmation an hour per address; a request that gets none
      is not kept, so it can never be confirmed.
    """
    if cadence not in CADENCES:
        raise ValueError(f"unknown cadence {cadence!r}")
    if _blocking_suppression(conn, email) is not None:
        return SignupOutcome(result="suppressed")
    key = email_key(email)
    row = _row_id(conn, key)
    choices = {"name": name, "topics": topics, "cadence": cadence, "timezone": timezone}
    if row is None:
        # A random starting version: if SQLite ever reuses the id of a deleted row, old links cannot match it.
        new_id = conn.execute(insert(t_sub).values(
            email=email.strip(), email_key=key, name=name.strip()[:200], topics=join_topics(topics), cadence=cadence,
            timezone=timezone, updated_at=at, status="pending", created_at=at, confirmation_sent_at=at,
            token_version=secrets.randbelow(2**31 - 1) + 1,
        ).returning(t_sub.c.id)).scalar_one()
        request_id = _new_request(conn, new_id, at=at, **choices)
        return SignupOutcome(result="created", subscriber=repository.get(conn, new_id), send_confirmation=True,
                             request_id=request_id)
    due = row.confirmation_sent_at is None or at - row.confirmation_sent_at >= CONFIRMATION_INTERVAL
    if row.status == "confirmed" and not repository.is_suppressed(conn, email):
        if due:
            conn.execute(update(t_sub).where(t_sub.c.id == row.id).values(confirmation_sent_at=at))
        return SignupOutcome(result="already-confirmed", subscriber=repository.get(conn, row.id), send_reminder=due)
    if not due:
        return SignupOutcome(result="resent-too-soon", subscriber=repository.get(conn, row.id))
    conn.execute(update(t_sub).where(t_sub.c.id == row.id).values(confirmation_sent_at=at))
    request_id = _new_request(conn, row.id, at=at, **choices)
    return SignupOutcome(result="updated", subscriber=repository.get(conn, row.id), send_confirmation=True,
                         request_id=request_id)


def request_confirmation(conn: Connection, *, email: str, at: datetime) -> SignupOutcome:
    """"Send it again": the newest sign-up request's confirmation once more, within the hourly limit."""
    if _blocking_suppression(conn, email) is not None:
        return SignupOutcome(result="suppressed")
    row = _row_id(conn, email_key(email))
    if row is None:
        return SignupOutcome(result="missing")
    if row.status == "confirmed" and not repository.is_suppressed(conn, email):
        return SignupOutcome(result="already-confirmed")
    if row.confirmation_sent_at is not None and at - row.confirmation_sent_at < CONFIRMATION_INTERVAL:
        return SignupOutcome(result="resent-too-soon", subscriber=repository.get(conn, row.id))
    request_id = conn.execute(select(t_req.c.id).where(t_req.c.subscriber_id == row.id)
                              .order_by(t_req.c.id.desc()).limit(1)).scalar()
    if request_id is None:
        return SignupOutcome(result="missing")
    conn.execute(update(t_sub).where(t_sub.c.id == row.id).values(confirmation_sent_at=at))
    return SignupOutcome(result="updated", subscriber=repository.get(conn, row.id), send_confirmation=True,
                         request_id=request_id)


def signup_request(conn: Connection, claims: TokenClaims) -> tuple[SignupRequest | None, Subscriber | None]:
    """The request a verified confirmation token names, and its subscriber; (None, None) when either is gone or
    the subscriber has left or deleted their data since."""
    row = conn.execute(select(t_req).where(t_req.c.id == claims.subscriber_id)).first()
    if row is None:
        return None, None
    sub = repository.get(conn, row.subscriber_id)
    if sub is None or sub.token_version != claims.version:
        return None, None
    return SignupRequest(id=row.id, subscriber_id=row.subscriber_id, name=row.name, topics=split_topics(row.topics),
                         cadence=row.cadence, timezone=row.timezone), sub


def current(conn: Connection, claims: TokenClaims) -> Subscriber | None:
    """The subscriber a verified token names, or None if they are gone or the link is from before they left."""
    sub = repository.get(conn, claims.subscriber_id)
    if sub is None or sub.token_version != claims.version:
        return None
    return sub


def subscriber_for(conn: Connection, claims: TokenClaims) -> Subscriber | None:
    """The subscriber a verified unsubscribe or stop token names, whatever has happened since it was sent: such a
    link can only reduce mail. Ids are never reused, so it cannot name anyone else."""
    return repository.get(conn, claims.subscriber_id)


def confirm(conn: Connection, claims: TokenClaims, *, at: datetime) -> ConfirmOutcome:
    """Confirm consent to the choices of the request the token names: record when and how. Idempotent.

    A web form's suppression of the address is lifted (the owner of the inbox has just shown they want mail);
    a bounce's, a spam report's or an operator's never is.
    """
    request, sub = signup_request(conn, claims)
    if request is None:
        return ConfirmOutcome(result="missing")
    if _blocking_suppression(conn, sub.email) is not None:
        return ConfirmOutcome(result="suppressed")
    if sub.status == "confirmed" and not repository.is_suppressed(conn, sub.email):
        return ConfirmOutcome(result="already-confirmed", subscriber=sub)
    repository.unsuppress(conn, email=sub.email)
    conn.execute(update(t_sub).where(t_sub.c.id == sub.id).values(
        status="confirmed", consent_source=WEB_CONSENT_SOURCE, consent_at=at, unsubscribed_at=None,
        paused_until=None, updated_at=at, name=request.name, topics=join_topics(request.topics),
        cadence=request.cadence, timezone=request.timezone))
    return ConfirmOutcome(result="confirmed", subscriber=repository.get(conn, sub.id))


def expire_unconfirmed(engine: Engine, at: datetime) -> int:
    """Delete web sign-ups never confirmed within 7 days of their last confirmation email. Returns how many.

    Pending rows that were never sent a confirmation (a CSV import without --consented) are left alone.
    """
    with engine.begin() as conn:
        return expire_unconfirmed_in(conn, at)


def expire_unconfirmed_in(conn: Connection, at: datetime) -> int:
    cutoff = at - CONFIRM_MAX_AGE
    conn.execute(delete(t_req).where(t_req.c.created_at < cutoff))
    return conn.execute(delete(t_sub).where(
        t_sub.c.status == "pending", t_sub.c.confirmation_sent_at.is_not(None),
        t_sub.c.confirmation_sent_at < cutoff)).rowcount


def update_preferences(conn: Connection, sub: Subscriber, *, topics: tuple[str, ...], cadence: str,
                       at: datetime) -> Subscriber:
    if cadence not in CADENCES:
        raise ValueError(f"unknown cadence {cadence!r}")
    if not topics:
        raise ValueError("choose at least one topic")
    conn.execute(update(t_sub).where(t_sub.c.id == sub.id).values(
        topics=join_topics(topics), cadence=cadence, updated_at=at))
    return repository.get(conn, sub.id)


def pause(conn: Connection, sub: Subscriber, *, weeks: int, at: datetime) -> Subscriber:
    if weeks not in PAUSE_WEEKS:
        raise ValueError(f"a pause is {', '.join(map(str, PAUSE_WEEKS))} weeks")
    conn.execute(update(t_sub).where(t_sub.c.id == sub.id).values(
        paused_until=at + timedelta(weeks=weeks), updated_at=at))
    return repository.get(conn, sub.id)


def resume(conn: Connection, sub: Subscriber, *, at: datetime) -> Subscriber:
    conn.execute(update(t_sub).where(t_sub.c.id == sub.id).values(paused_until=None, updated_at=at))
    return repository.get(conn, sub.id)


def unsubscribe(conn: Connection, claims: TokenClaims, *, at: datetime) -> str:
    """Leave all email, through any unsubscribe link we ever sent (it can only reduce mail, so a link from before
    a re-subscription still works). Other links stop working afterwards.

    Returns "unsubscribed", "already" (nothing to do: not subscribed now) or "gone" (no such subscriber).
    Takes effect at once: the digest sender re-checks ``status`` before every batch.
    """
    sub = repository.get(conn, claims.subscriber_id)
    if sub is None:
        return "gone"
    if sub.status == "unsubscribed":
        return "already"
    conn.execute(update(t_sub).where(t_sub.c.id == sub.id).values(
        status="unsubscribed", unsubscribed_at=at, paused_until=None, updated_at=at,
        token_version=t_sub.c.token_version + 1))
    return "unsubscribed"


def stop_sensitive_topics(conn: Connection, sub: Subscriber, *, sensitive: frozenset[str],
                          default_topics: tuple[str, ...], at: datetime) -> tuple[Subscriber, bool]:
    """Stop only the sensitive (end-of-life) topics. Returns (subscriber, still_subscribed).

    If those were the only topics chosen, nothing else is left to send, so the subscriber leaves entirely rather
    than silently falling back to the default topics they never picked.
    """
    chosen = sub.topics or default_topics
    remaining = tuple(t for t in chosen if t not in sensitive)
    if not remaining:
        conn.execute(update(t_sub).where(t_sub.c.id == sub.id).values(
            status="unsubscribed", unsubscribed_at=at, paused_until=None, updated_at=at,
            token_version=t_sub.c.token_version + 1))
        return repository.get(conn, sub.id), False
    if remaining != chosen:
        conn.execute(update(t_sub).where(t_sub.c.id == sub.id).values(topics=join_topics(remaining), updated_at=at))
    return repository.get(conn, sub.id), True


def stop_request(conn: Connection, *, email: str) -> Subscriber | None:
    """Someone says the person at ``email`` has died: the subscriber to write to once (their own inbox decides),
    or None when there is nobody we still mail at that address. Changes nothing."""
    sub = repository.get_by_email(conn, email)
    if sub is None or sub.status == "unsubscribed" or repository.is_suppressed(conn, sub.email):
        return None
    return sub


def stop_all(conn: Connection, claims: TokenClaims, *, at: datetime) -> bool:
    """The button in the "someone has died" email: suppress the address and end any subscription.

    Any link we sent still works (it can only reduce mail). Returns False if the subscriber is gone.
    """
    sub = repository.get(conn, claims.subscriber_id)
    if sub is None:
        return False
    repository.suppress(conn, email=sub.email, reason="deceased", at=at, source=WEB_SUPPRESSION_SOURCE,
                        detail="stopped from the address's own inbox")
    conn.execute(update(t_sub).where(t_sub.c.id == sub.id, t_sub.c.status != "unsubscribed").values(
        status="unsubscribed", unsubscribed_at=at, paused_until=None, updated_at=at,
        token_version=t_sub.c.token_version + 1))
    return True


def export_data(conn: Connection, sub: Subscriber) -> dict:
    """Everything we hold about one subscriber, as JSON-ready values."""
    row = conn.execute(select(t_sub).where(t_sub.c.id == sub.id)).first()
    iso = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    record = {
        "email": row.email, "name": row.name, "topics": [t for t in row.topics.split(";") if t],
        "cadence": row.cadence, "timezone": row.timezone, "status": row.status,
        "consent_source": row.consent_source, "consent_at": iso(row.consent_at), "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at), "confirmation_sent_at": iso(row.confirmation_sent_at),
        "unsubscribed_at": iso(row.unsubscribed_at), "paused_until": iso(row.paused_until),
    }
    sent = conn.execute(
        select(t_iss.c.digest, t_iss.c.fire_at, t_del.c.state, t_del.c.sent_at)
        .join(t_iss, t_iss.c.id == t_del.c.issue_id)
        .where(and_(t_del.c.subscriber_id == sub.id))
        .order_by(t_iss.c.fire_at))
    record["emails"] = [{"digest": r.digest, "issue": iso(r.fire_at), "state": r.state, "sent_at": iso(r.sent_at)}
                        for r in sent]
    return {"subscriber": record}


def delete_data(conn: Connection, sub: Subscriber) -> None:
    """Delete the subscriber and their delivery records. Nothing is suppressed: they may come back."""
    conn.execute(delete(t_del).where(t_del.c.subscriber_id == sub.id))
    conn.execute(delete(t_req).where(t_req.c.subscriber_id == sub.id))
    # Anything still waiting to be emailed to them holds their address: it goes too.
    outbox.forget_subscriber(conn, sub.id, at=datetime.now(UTC))
    conn.execute(delete(t_sub).where(t_sub.c.id == sub.id))
    # With their ledger rows gone, no issue needs to know of their changes (the delete itself logged one).
    conn.execute(delete(t_changes).where(t_changes.c.subscriber_id == sub.id))
