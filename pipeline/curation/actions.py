"""The inbox's record of what happened: fetched, promoted, dismissed, dropped.

``record`` is the one place every inbox action is written. When the editorial audit log exists, it should write
there instead (or as well); callers need not change.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from pipeline.store.tables import curation_actions

ACTIONS = ("fetched", "promoted", "dismissed", "dropped")


def record(conn: Connection, action: str, *, at: datetime, source_id: str | None = None,
           candidate_id: int | None = None, slug: str | None = None, detail: str = "") -> None:
    """Append one action. ``detail`` is operator-facing text about sources and items, never personal data."""
    if action not in ACTIONS:
        raise ValueError(f"unknown inbox action {action!r}")
    conn.execute(insert(curation_actions).values(at=at, action=action, source_id=source_id,
                                                 candidate_id=candidate_id, slug=slug, detail=detail[:2000]))


def recent(conn: Connection, *, limit: int = 50) -> list:
    return list(conn.execute(select(curation_actions).order_by(curation_actions.c.id.desc()).limit(limit)))
