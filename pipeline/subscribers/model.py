"""Subscriber values and the rules for which topics a subscriber receives."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

CADENCES = ("weekly", "monthly")
STATUSES = ("pending", "confirmed", "unsubscribed")


def email_key(email: str) -> str:
    """The case-insensitive identity of an address."""
    return email.strip().lower()


def join_topics(topics: tuple[str, ...] | list[str]) -> str:
    return ";".join(topics)


def split_topics(value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (value or "").split(";") if t.strip())


@dataclass(frozen=True, kw_only=True)
class Subscriber:
    id: int
    email: str
    name: str
    topics: tuple[str, ...]
    cadence: str
    timezone: str
    status: str
    consent_source: str | None = None
    consent_at: datetime | None = None
    paused_until: datetime | None = None
    token_version: int = 0

    def evolve(self, **changes) -> Subscriber:
        return replace(self, **changes)


def effective_topics(chosen: tuple[str, ...], default_topics: tuple[str, ...]) -> tuple[str, ...]:
    """No choice means the default (non-sensitive) topics. Sensitive ones come only by choice."""
    return chosen if chosen else default_topics
