"""Opening an issue: find it, or create it with one pending ledger row per recipient, cut into batches.

Planning cuts each variant's recipients into numbered batches of one backend request (see ``ledger`` for how
they are claimed). Planners of one issue are serialised, so a second finds the first's rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Select, column, false, func, insert, literal, select, table, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pipeline.store.tables import deliveries as t_del
from pipeline.store.tables import issues as t_iss


@dataclass(frozen=True, kw_only=True)
class ByTopics:
    """Recipients as a query of (id, topics as stored, email, token_version), each to get the variant of its topics:
    planned inside the database, without reading every recipient into this process and writing it back."""

    selection: Select
    variant_of: Mapping[str, str]  # topics as stored -> variant key; other topics get nothing
    per_variant: Mapping[str, int]  # recipients of each variant, as counted in this transaction
    # deliver_at: local: when a recipient in a zone (as stored) is due. None: everyone at once (due_at NULL).
    due_in_zone: Callable[[str | None], datetime] | None = None


class Opened(NamedTuple):
    issue_id: int
    created: bool  # this call planned it
    planned: int  # rows planned by this call (0 when the issue was there already)


def find_issue(conn: Connection, digest: str, fire_at: datetime) -> int | None:
    return conn.execute(select(t_iss.c.id).where(t_iss.c.digest == digest, t_iss.c.fire_at == fire_at)).scalar()


def latest_issues(conn: Connection) -> list[tuple[str, datetime, int]]:
    """(digest, fire time, issue id) of each digest's latest issue."""
    newest = select(t_iss.c.digest, func.max(t_iss.c.fire_at).label("fire_at")).group_by(t_iss.c.digest).subquery()
    rows = conn.execute(select(t_iss.c.digest, t_iss.c.fire_at, t_iss.c.id).join(
        newest, (t_iss.c.digest == newest.c.digest) & (t_iss.c.fire_at == newest.c.fire_at)).order_by(t_iss.c.digest))
    return [(r.digest, r.fire_at, r.id) for r in rows]


def _issue_lock(conn: Connection, digest: str, fire_at: datetime) -> None:
    # PostgreSQL: serialise planners of one issue so the second waits and then finds the first's rows.
    # SQLite needs nothing: BEGIN IMMEDIATE already holds the database's write lock.
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"issue:{digest}:{fire_at.isoformat()}".encode()).digest()[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def open_issue(engine: Engine, digest: str, fire_at: datetime, period: tuple[datetime, datetime],
               plan_recipients: Callable[[Connection], ByTopics], *, at: datetime,
               batch_size: int = 1000) -> Opened:
    """Find the issue of ``digest`` at ``fire_at``, or create it with all its delivery rows in one transaction.

    ``plan_recipients(conn)`` returns the recipients and their variants, read in the same transaction. It is
    called only when the issue is new.
    """
    for _ in range(3):
        try:
            with engine.begin() as conn:
                _issue_lock(conn, digest, fire_at)
                existing = find_issue(conn, digest, fire_at)
                if existing is not None:
                    return Opened(existing, False, 0)
                issue_id = conn.execute(insert(t_iss).values(
                    digest=digest, fire_at=fire_at, period_start=period[0], period_end=period[1], planned_at=at,
                ).returning(t_iss.c.id)).scalar_one()
                _forget_stale_contacts(conn, at)
                _start_watching_changes(conn, issue_id)
                planned = _insert_pending(conn, issue_id, plan_recipients(conn), batch_size)
                if conn.dialect.name == "postgresql":
                    # Fresh statistics. Planned against an "empty" deliveries table, each claim's join would scan
                    # every pending row per picked row (seen: minutes for 75,000 recipients instead of seconds);
                    # against a just-imported subscribers table, each batch's read would hash the whole table
                    # (seen: 40 ms a batch for 200,000 subscribers, before autovacuum's analyze came round).
                    conn.execute(text("ANALYZE deliveries, subscribers, suppressions"))
                return Opened(issue_id, True, planned)
        except IntegrityError:
            continue  # another planner created it between our look and our insert: look again
    with engine.connect() as conn:
        existing = find_issue(conn, digest, fire_at)
    if existing is None:
        raise RuntimeError(f"could not create or find issue {digest} at {fire_at.isoformat()}")
    return Opened(existing, False, 0)


CHANGE_MARGIN = 3600  # seconds: longer than any transaction that changes a subscriber
CHANGES_KEPT = 30 * 86400
CONTACTS_KEPT = timedelta(days=7)

_PLAN_VARIANTS = table("plan_variants", column("topics"), column("variant"), column("first_batch"))


def _insert_pending(conn: Connection, issue_id: int, plan: ByTopics, batch_size: int) -> int:
    """One pending row per recipient, in one INSERT ... SELECT: variant by variant (in key order), each variant's
    recipients in subscriber order, cut into batches of ``batch_size`` numbered from the variant's first. On PostgreSQL a subscriber confirmed between the
    count and the insert can push a variant's last batch into the next variant's first; the claim of a batch
    takes ``limit`` rows whatever their variant, and sends each variant apart, so that costs one extra request."""
    batch_size = max(1, batch_size)
    first, batches = {}, 0
    for key in sorted(plan.per_variant):
        first[key] = batches
        batches += -(-plan.per_variant[key] // batch_size)
    conn.execute(text("CREATE TEMPORARY TABLE plan_variants (topics TEXT PRIMARY KEY, variant TEXT NOT NULL, "
                      "first_batch INTEGER NOT NULL)"))
    if plan.variant_of:
        conn.execute(insert(_PLAN_VARIANTS), [{"topics": topics, "variant": key, "first_batch": first[key]}
                                              for topics, key in plan.variant_of.items()])
    chosen = plan.selection.subquery("chosen")
    pv = _PLAN_VARIANTS
    place = func.row_number().over(partition_by=pv.c.variant, order_by=chosen.c.id) - 1
    rows = select(literal(issue_id), chosen.c.id, pv.c.variant, pv.c.first_batch + place // batch_size,
                  literal("pending"), literal(0), false(), chosen.c.email, chosen.c.token_version,
                  ).join_from(chosen, pv, pv.c.topics == chosen.c.topics)
    # preserve_rowcount: without it SQLAlchemy gives -1 for an INSERT ... SELECT on PostgreSQL, and counting the
    # rows again took 0.17 s for 750,000.
    inserted = conn.execute(insert(t_del).from_select(
        ["issue_id", "subscriber_id", "variant", "batch_no", "state", "attempts", "possible_duplicate", "email",
         "token_version"], rows).execution_options(preserve_rowcount=True)).rowcount
    conn.execute(text("DROP TABLE plan_variants"))
    if plan.due_in_zone is not None:
        _set_due(conn, issue_id, plan.due_in_zone)
    if inserted < 0:  # a driver that reports no count
        inserted = conn.execute(select(func.count()).where(t_del.c.issue_id == issue_id)).scalar_one()
    return inserted


def _set_due(conn: Connection, issue_id: int, due_in_zone: Callable[[str | None], datetime]) -> None:
    """Each row's due time, from its subscriber's zone: one UPDATE per distinct due time, inside the database."""
    zones = list(conn.execute(text(
        "SELECT DISTINCT s.timezone FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
        "WHERE d.issue_id = :issue_id"), {"issue_id": issue_id}).scalars())
    by_due: dict[datetime, list[str | None]] = {}
    for zone in zones:
        by_due.setdefault(due_in_zone(zone), []).append(zone)
    t_sub = table("subscribers", column("id"), column("timezone"))
    for when, names in sorted(by_due.items()):
        named = [n for n in names if n is not None]
        in_zone = t_sub.c.timezone.in_(named)
        if None in names:
            in_zone = in_zone | t_sub.c.timezone.is_(None)
        conn.execute(update(t_del).where(t_del.c.issue_id == issue_id, t_del.c.subscriber_id.in_(
            select(t_sub.c.id).where(in_zone))).values(due_at=when))


def _forget_stale_contacts(conn: Connection, at: datetime) -> None:
    """Issues planned more than CONTACTS_KEPT ago and never finished (a send that stopped and was not run again)
    drop the addresses their open rows copied at planning: a copy kept only to spare a claim its lookups. Were such
    an issue run again, its claims look every recipient up afresh (no ``changes_since``, no copied address)."""
    stale = select(t_iss.c.id).where(t_iss.c.planned_at < at - CONTACTS_KEPT, t_iss.c.completed_at.is_(None),
                                     t_iss.c.changes_since.is_not(None))
    ids = list(conn.execute(stale).scalars())
    if ids:
        conn.execute(update(t_del).where(t_del.c.issue_id.in_(ids), t_del.c.email.is_not(None)).values(email=None))
        conn.execute(update(t_iss).where(t_iss.c.id.in_(ids)).values(changes_since=None))


def _db_time_ago(conn: Connection, seconds: int) -> str:
    """SQL for the database's own clock, ``seconds`` ago, comparable with subscriber_changes.changed_at."""
    if conn.dialect.name == "postgresql":
        return f"(now() - interval '{int(seconds)} seconds')"
    return f"datetime('now', '-{int(seconds)} seconds')"


def _start_watching_changes(conn: Connection, issue_id: int) -> None:
    """From now on (less CHANGE_MARGIN, for changes whose transactions began earlier but committed after this
    plan's snapshot), changes to this issue's recipients are looked up again when their batch is claimed. Changes
    older than CHANGES_KEPT that no open issue watches any more are dropped."""
    conn.execute(text(f"UPDATE issues SET changes_since = {_db_time_ago(conn, CHANGE_MARGIN)} WHERE id = :id"),
                 {"id": issue_id})
    conn.execute(text(
        f"DELETE FROM subscriber_changes WHERE changed_at < {_db_time_ago(conn, CHANGES_KEPT)} AND NOT EXISTS "
        "(SELECT 1 FROM issues WHERE completed_at IS NULL AND changes_since <= subscriber_changes.changed_at)"))
