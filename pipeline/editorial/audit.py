"""The editorial audit log: append and read. Nothing here (or anywhere) updates or deletes a row.

Actors are ``staff:<id>``, ``file:content/<slug>.md``, ``operator`` (a shell command with no account),
``feed-build`` (went_live) or ``unknown`` (a refused attempt by no account); never an email address, and never
subscriber data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from pipeline.store.tables import audit_log

EVENTS = (
    "revision_created", "submitted", "approved", "attested", "changes_requested", "approval_refused", "scheduled",
    "went_live", "retracted", "staff_added", "staff_disabled", "staff_changed",
    # Staff security events (the workbench's sign-in): never an email address, only the account or "unknown".
    "login", "login_failed", "logout",
    # The curation inbox, acted on in the workbench.
    "inbox_promoted", "inbox_dismissed",
)


@dataclass(frozen=True, kw_only=True)
class Entry:
    id: int
    event: str
    actor: str
    at: datetime
    slug: str | None
    revision: str | None
    detail: dict

    def as_json(self) -> dict:
        return {"id": self.id, "event": self.event, "actor": self.actor, "at": self.at.isoformat(), "slug": self.slug,
                "revision": self.revision, **({"detail": self.detail} if self.detail else {})}


def append(conn: Connection, event: str, *, actor: str, at: datetime, slug: str | None = None,
           revision: str | None = None, **detail: object) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    conn.execute(audit_log.insert().values(event=event, actor=actor, at=at, slug=slug, revision=revision,
                                           detail=json.dumps(detail, sort_keys=True, default=str) if detail else ""))


def entries(conn: Connection, *, slug: str | None = None, since: datetime | None = None,
            events: tuple[str, ...] = ()) -> list[Entry]:
    q = select(audit_log).order_by(audit_log.c.id)
    if slug is not None:
        q = q.where(audit_log.c.slug == slug)
    if since is not None:
        q = q.where(audit_log.c.at >= since)
    if events:
        q = q.where(audit_log.c.event.in_(events))
    return [Entry(id=r.id, event=r.event, actor=r.actor, at=r.at, slug=r.slug, revision=r.revision,
                  detail=json.loads(r.detail) if r.detail else {}) for r in conn.execute(q)]
