"""Sliding-window rate limits kept in the rate_events table, so every worker process shares them."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from pipeline.store.tables import rate_events as t_rate


@dataclass(frozen=True, kw_only=True)
class Limit:
    name: str
    count: int
    window: timedelta


SIGNUP_PER_IP = Limit(name="signup-ip", count=10, window=timedelta(hours=1))
SIGNUP_PER_ADDRESS = Limit(name="signup-address", count=5, window=timedelta(hours=1))
DECEASED_PER_IP = Limit(name="deceased-ip", count=10, window=timedelta(hours=1))
# The "someone has died" email goes to a third party's inbox: once a week per address, whoever asks.
DECEASED_PER_ADDRESS = Limit(name="deceased-address", count=1, window=timedelta(days=7))


def key_for(limit: Limit, value: str, *, secret: str) -> str:
    """A keyed hash, so neither addresses nor IP addresses are stored in the table."""
    digest = hmac.new(secret.encode(), value.strip().lower().encode(), hashlib.sha256).hexdigest()[:40]
    return f"{limit.name}:{digest}"


def hit(conn: Connection, key: str, limit: Limit, *, at: datetime) -> bool:
    """Count one attempt for ``key``. False (and nothing recorded) when the limit is already reached."""
    start = at - limit.window
    conn.execute(delete(t_rate).where(t_rate.c.key == key, t_rate.c.at <= start))
    used = conn.execute(select(func.count()).select_from(t_rate)
                        .where(t_rate.c.key == key, t_rate.c.at > start)).scalar_one()
    if used >= limit.count:
        return False
    conn.execute(insert(t_rate).values(key=key, at=at))
    return True
