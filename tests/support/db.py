"""Seeding a test database with subscribers, an issue and its ledger rows, in bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from pipeline.store.tables import deliveries, issues, subscribers

AT = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def add_subscribers(engine: Engine, n: int, *, start: int = 1, domain: str = "example.org",
                    cadence: str = "weekly") -> list[int]:
    rows = [{"id": i, "email": f"reader{i}@{domain}", "email_key": f"reader{i}@{domain}", "name": "",
             "topics": "", "cadence": cadence, "timezone": "UTC", "status": "confirmed", "created_at": AT,
             "updated_at": AT, "token_version": 0} for i in range(start, start + n)]
    with engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(subscribers), rows[i:i + 5000])
    return [r["id"] for r in rows]


def add_issue(engine: Engine, subscriber_ids: list[int], *, digest: str = "weekly", fire_at: datetime = AT,
              variant: str = "v1") -> int:
    with engine.begin() as conn:
        issue_id = conn.execute(insert(issues).values(
            digest=digest, fire_at=fire_at, period_start=fire_at - timedelta(days=7), period_end=fire_at,
            planned_at=fire_at).returning(issues.c.id)).scalar_one()
        rows = [{"issue_id": issue_id, "subscriber_id": sid, "variant": variant, "state": "pending", "attempts": 0,
                 "possible_duplicate": False} for sid in subscriber_ids]
        for i in range(0, len(rows), 5000):
            conn.execute(insert(deliveries), rows[i:i + 5000])
    return issue_id
