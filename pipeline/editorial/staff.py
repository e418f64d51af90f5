"""Staff accounts: who may write (editor), approve (reviewer) and manage accounts (admin). No default account."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from pipeline.editorial import audit, passwords, totp
from pipeline.errors import InputError, NotFound
from pipeline.store.tables import staff

ROLES = ("editor", "reviewer", "admin")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class AuthError(Exception):
    """Who the person is could not be proved. ``reason`` is for the audit log and the person alike."""

    def __init__(self, reason: str, account: Account | None = None):
        self.reason = reason
        self.account = account
        super().__init__(reason)


@dataclass(frozen=True, kw_only=True)
class Account:
    id: int
    email: str
    name: str
    role: str
    credentials: str
    disabled: bool
    has_totp: bool

    @property
    def actor(self) -> str:
        return f"staff:{self.id}"

    @property
    def shown_as(self) -> str:
        """Name and credentials, as readers see them beside a review."""
        return f"{self.name}, {self.credentials}" if self.credentials else self.name


def _account(row: Row) -> Account:
    return Account(id=row.id, email=row.email, name=row.name, role=row.role, credentials=row.credentials,
                   disabled=row.disabled, has_totp=bool(row.totp_secret))


def _key(email: str) -> str:
    return email.strip().lower()


def _text(value: str, field: str, limit: int, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InputError(f"{field}: is required")
    if len(value) > limit or _CONTROL_RE.search(value):
        raise InputError(f"{field}: must be one line of at most {limit} characters")
    return value


def find(conn: Connection, email: str) -> Account | None:
    row = conn.execute(select(staff).where(staff.c.email_key == _key(email))).first()
    return _account(row) if row else None


def by_id(conn: Connection, staff_id: int) -> Account | None:
    row = conn.execute(select(staff).where(staff.c.id == staff_id)).first()
    return _account(row) if row else None


def require(conn: Connection, email: str) -> Account:
    account = find(conn, email)
    if account is None:
        raise NotFound(f"{email}: no staff account with this email; see 'pipeline staff list'")
    return account


def accounts(conn: Connection) -> list[Account]:
    return [_account(r) for r in conn.execute(select(staff).order_by(staff.c.id))]


def add(conn: Connection, *, email: str, name: str, role: str, credentials: str = "", password: str,
        at: datetime, actor: str = "operator") -> Account:
    email = email.strip()
    if not _EMAIL_RE.match(email) or len(email) > 320:
        raise InputError(f"EMAIL: {email!r} is not an email address")
    if role not in ROLES:
        raise InputError(f"--role: {role!r} is not a role; use one of: {', '.join(ROLES)}")
    name = _text(name, "--name", 200, required=True)
    credentials = _text(credentials, "--credentials", 200, required=False)
    if (problem := passwords.weakness(password)) is not None:
        raise InputError(f"password: {problem}")
    if find(conn, email) is not None:
        raise InputError(f"{email}: a staff account with this email already exists; see 'pipeline staff list'")
    new_id = conn.execute(staff.insert().values(
        email=email, email_key=_key(email), name=name, role=role, credentials=credentials,
        password_hash=passwords.hash_password(password), totp_secret=None, disabled=False,
        created_at=at, updated_at=at)).inserted_primary_key[0]
    audit.append(conn, "staff_added", actor=actor, at=at, account=f"staff:{new_id}", role=role)
    return by_id(conn, new_id)  # type: ignore[return-value]


def disable(conn: Connection, email: str, *, at: datetime, actor: str = "operator") -> bool:
    """False when the account was already disabled."""
    account = require(conn, email)
    if account.disabled:
        return False
    conn.execute(staff.update().where(staff.c.id == account.id).values(disabled=True, updated_at=at))
    audit.append(conn, "staff_disabled", actor=actor, at=at, account=account.actor)
    return True


def set_password(conn: Connection, email: str, password: str, *, at: datetime, actor: str = "operator") -> None:
    account = require(conn, email)
    if (problem := passwords.weakness(password)) is not None:
        raise InputError(f"password: {problem}")
    conn.execute(staff.update().where(staff.c.id == account.id)
                 .values(password_hash=passwords.hash_password(password), updated_at=at))
    audit.append(conn, "staff_changed", actor=actor, at=at, account=account.actor, change="password")


def set_totp(conn: Connection, email: str, secret: str | None, *, at: datetime, actor: str = "operator") -> None:
    """Turn the second factor on (a base32 secret) or off (None)."""
    account = require(conn, email)
    conn.execute(staff.update().where(staff.c.id == account.id).values(totp_secret=secret, updated_at=at))
    audit.append(conn, "staff_changed", actor=actor, at=at, account=account.actor,
                 change="second factor on" if secret else "second factor off")


def authenticate(conn: Connection, email: str, password: str, *, code: str | None, at: datetime,
                 second_factor: bool = True) -> Account:
    """The account, once its password (and one-time code, where it has a second factor) is proved.
    Raises AuthError. A hash made with older parameters is replaced on success.
    ``second_factor=False``: the password only (the workbench asks for the code on a page of its own)."""
    row = conn.execute(select(staff).where(staff.c.email_key == _key(email))).first()
    if row is None:
        passwords.verify(passwords.hash_password("not-an-account-000"), password)  # same time as a real check
        raise AuthError("no such staff account")
    account = _account(row)
    ok, rehash = passwords.verify(row.password_hash, password)
    if not ok:
        raise AuthError("wrong password", account)
    if account.disabled:
        raise AuthError("the account is disabled", account)
    if second_factor and row.totp_secret and not (code and totp.verify(row.totp_secret, code, at=at)):
        raise AuthError("missing or wrong one-time code", account)
    if rehash:
        conn.execute(staff.update().where(staff.c.id == account.id)
                     .values(password_hash=passwords.hash_password(password)))
    return account


def verify_code(conn: Connection, staff_id: int, code: str, *, at: datetime) -> bool:
    """True when ``code`` is the account's current one-time code."""
    secret = conn.execute(select(staff.c.totp_secret).where(staff.c.id == staff_id)).scalar_one_or_none()
    return bool(secret) and totp.verify(secret, code, at=at)


def stamp(conn: Connection, staff_id: int) -> str | None:
    """A digest of the account's password hash (None when there is no such account): sessions keep it, so a
    password change ends them."""
    import hashlib

    stored = conn.execute(select(staff.c.password_hash).where(staff.c.id == staff_id)).scalar_one_or_none()
    return hashlib.sha256(stored.encode()).hexdigest() if stored else None
