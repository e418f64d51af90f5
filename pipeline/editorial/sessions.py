"""Staff sessions: server-side rows behind an opaque cookie value, of which only the SHA-256 is stored.

A session ends after 8 hours without use, 7 days in all, at logout, and when its account's password changes or
the account is disabled. A half-finished sign-in (password proved, code to come) lasts 10 minutes. Every sign-in
step makes a new id, so an id known before the sign-in is worth nothing after it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from pipeline.editorial import staff
from pipeline.store.tables import staff_sessions

IDLE = timedelta(hours=8)
ABSOLUTE = timedelta(days=7)
STEP = timedelta(minutes=10)  # a sign-in waiting for its one-time code or enrolment
REAUTH = timedelta(minutes=5)  # an approval asks for the password again after this
STAGES = ("code", "enrol", "full")


@dataclass(frozen=True, kw_only=True)
class Session:
    key: str  # the stored id (SHA-256 of the cookie value)
    account: staff.Account
    stage: str
    pending_secret: str | None
    created_at: datetime
    password_at: datetime

    def password_fresh(self, at: datetime) -> bool:
        return at - self.password_at <= REAUTH


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def start(conn: Connection, account: staff.Account, *, stage: str, at: datetime,
          pending_secret: str | None = None, replaces: str | None = None) -> str:
    """A new session; returns the cookie value. ``replaces``: the cookie of a session to end (the previous step)."""
    if stage not in STAGES:
        raise ValueError(stage)
    if replaces:
        end(conn, replaces)
    cookie = secrets.token_urlsafe(32)
    conn.execute(staff_sessions.insert().values(
        id=_key(cookie), staff_id=account.id, stage=stage, stamp=staff.stamp(conn, account.id) or "",
        pending_secret=pending_secret, created_at=at, last_seen_at=at, password_at=at))
    return cookie


def _alive(row, account: staff.Account | None, stamp: str | None, at: datetime) -> bool:
    if account is None or account.disabled or stamp != row.stamp:
        return False
    if row.stage != "full":
        return at - row.created_at <= STEP
    return at - row.last_seen_at <= IDLE and at - row.created_at <= ABSOLUTE


def find(conn: Connection, cookie: str | None, *, at: datetime) -> Session | None:
    """The live session for ``cookie``, or None. Reads only: an ended session is refused, not deleted, so a
    refused request changes nothing."""
    if not cookie or len(cookie) > 200:
        return None
    row = conn.execute(select(staff_sessions).where(staff_sessions.c.id == _key(cookie))).first()
    if row is None:
        return None
    account = staff.by_id(conn, row.staff_id)
    if not _alive(row, account, staff.stamp(conn, row.staff_id), at):
        return None
    return Session(key=row.id, account=account, stage=row.stage, pending_secret=row.pending_secret,  # type: ignore[arg-type]
                   created_at=row.created_at, password_at=row.password_at)


def touch(conn: Connection, session: Session, *, at: datetime, password: bool = False) -> None:
    """Mark the session used now (and the password entered now, when ``password``)."""
    values = {"last_seen_at": at, **({"password_at": at} if password else {})}
    conn.execute(staff_sessions.update().where(staff_sessions.c.id == session.key).values(**values))


def end(conn: Connection, cookie: str) -> None:
    conn.execute(delete(staff_sessions).where(staff_sessions.c.id == _key(cookie)))


def end_all(conn: Connection, staff_id: int) -> int:
    return conn.execute(delete(staff_sessions).where(staff_sessions.c.staff_id == staff_id)).rowcount


def sweep(conn: Connection, *, at: datetime) -> int:
    """Delete sessions that can no longer be used by their age alone."""
    return conn.execute(delete(staff_sessions).where(
        (staff_sessions.c.last_seen_at < at - IDLE) | (staff_sessions.c.created_at < at - ABSOLUTE))).rowcount
