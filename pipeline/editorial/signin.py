"""Staff sign-in: the password step, the one-time code step and enrolment, with lockout and audit entries.

Failures are counted per account (by a keyed hash of the address typed, so unknown accounts count too) and per
IP address. 10 failures within 15 minutes lock that key for 15 minutes from the 10th; while locked, no password
is checked. Unknown accounts, wrong passwords, disabled accounts and locks all answer with the same words.
Every failure is a ``login_failed`` entry in the audit log, with the account (or "unknown") and never an address.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from pipeline.editorial import audit, staff, totp
from pipeline.store.tables import rate_events

MAX_FAILURES = 10
WINDOW = timedelta(minutes=15)
LOCK = timedelta(minutes=15)
SAME_ANSWER = "That email address and password don't match an account that can sign in."
LOCKED_ANSWER = ("Too many attempts to sign in. For safety, signing in is paused for 15 minutes. "
                 "If this wasn't you, tell an admin.")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    account: staff.Account | None
    error: str | None  # what the person is told


def _keys(email: str, ip: str, secret: str) -> list[str]:
    def h(kind: str, value: str) -> str:
        return f"staff-login-{kind}:" + hmac.new(secret.encode(), value.strip().lower().encode(),
                                                 hashlib.sha256).hexdigest()[:40]
    return [h("account", email), h("ip", ip)]


def _locked(conn: Connection, key: str, at: datetime) -> bool:
    times = [r.at for r in conn.execute(select(rate_events.c.at).where(
        rate_events.c.key == key, rate_events.c.at > at - WINDOW - LOCK).order_by(rate_events.c.at))]
    for i in range(MAX_FAILURES - 1, len(times)):
        tenth = times[i]
        if tenth - times[i - MAX_FAILURES + 1] <= WINDOW and at - tenth < LOCK:
            return True
    return False


def locked(conn: Connection, *, email: str, ip: str, secret: str, at: datetime) -> bool:
    return any(_locked(conn, k, at) for k in _keys(email, ip, secret))


def _fail(conn: Connection, *, keys: list[str], actor: str, reason: str, step: str, at: datetime) -> None:
    for key in keys:
        conn.execute(delete(rate_events).where(rate_events.c.key == key, rate_events.c.at <= at - WINDOW - LOCK))
        conn.execute(insert(rate_events).values(key=key, at=at))
    audit.append(conn, "login_failed", actor=actor, at=at, step=step, reason=reason)


def password_step(conn: Connection, *, email: str, password: str, ip: str, secret: str, at: datetime) -> Outcome:
    keys = _keys(email, ip, secret)
    if any(_locked(conn, k, at) for k in keys):
        account = staff.find(conn, email) if len(email) <= 320 else None
        audit.append(conn, "login_failed", actor=account.actor if account else "unknown", at=at, step="password",
                     reason="locked after too many failures")
        return Outcome(account=None, error=LOCKED_ANSWER)
    try:
        account = staff.authenticate(conn, email, password, code=None, at=at, second_factor=False)
    except staff.AuthError as exc:
        _fail(conn, keys=keys, actor=exc.account.actor if exc.account else "unknown", reason=exc.reason,
              step="password", at=at)
        return Outcome(account=None, error=SAME_ANSWER)
    return Outcome(account=account, error=None)


def code_step(conn: Connection, account: staff.Account, *, code: str, ip: str, secret: str, at: datetime,
              enrol_secret: str | None = None) -> str | None:
    """None when ``code`` is right (for the account's factor, or for ``enrol_secret`` while enrolling, which
    then becomes the account's factor); else what the person is told."""
    keys = _keys(account.email, ip, secret)
    if any(_locked(conn, k, at) for k in keys):
        audit.append(conn, "login_failed", actor=account.actor, at=at, step="code",
                     reason="locked after too many failures")
        return LOCKED_ANSWER
    ok = totp.verify(enrol_secret, code, at=at) if enrol_secret else staff.verify_code(conn, account.id, code, at=at)
    if not ok:
        _fail(conn, keys=keys, actor=account.actor, reason="wrong one-time code", step="code", at=at)
        return "That code didn't work. Codes change every 30 seconds; type the one your app shows now."
    if enrol_secret:
        staff.set_totp(conn, account.email, enrol_secret, at=at, actor=account.actor)
    return None


def needs_code(account: staff.Account, *, two_factor: bool) -> str | None:
    """After the password: "code", "enrol" or None (signed in)."""
    if account.has_totp and two_factor:
        return "code"
    if two_factor and account.role in ("reviewer", "admin"):
        return "enrol"
    return None


def signed_in(conn: Connection, account: staff.Account, *, at: datetime) -> None:
    audit.append(conn, "login", actor=account.actor, at=at)
