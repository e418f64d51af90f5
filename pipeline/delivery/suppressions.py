"""Operator actions on the suppression list. A suppressed address is skipped at the next claim of a batch."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine

from pipeline.errors import InputError
from pipeline.subscribers import repository

log = logging.getLogger("pipeline.delivery.suppressions")


def _checked(email: str) -> str:
    value = email.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise InputError(f"EMAIL: {email!r} is not an email address, e.g. name@example.org")
    return value


def add(engine: Engine, email: str, *, reason: str, at: datetime, detail: str = "", source: str = "manual") -> bool:
    with engine.begin() as conn:
        added = repository.suppress(conn, email=_checked(email), reason=reason, at=at, source=source, detail=detail)
    log.info("suppression added", extra={"action": "suppression_added", "reason": reason, "new": added})
    return added


def remove(engine: Engine, email: str) -> bool:
    with engine.begin() as conn:
        removed = repository.unsuppress(conn, email=_checked(email))
    log.info("suppression removed", extra={"action": "suppression_removed", "found": removed})
    return removed
