"""The delivery ledger: one row per recipient of an issue, fixed when the issue is first planned.

Rows move pending -> in_flight (claimed) -> sent | failed | unknown, or to suppressed when the subscriber is no
longer mailable. Claims are atomic, so several workers share an issue without sending anyone twice: on PostgreSQL
through ``FOR UPDATE SKIP LOCKED``, on SQLite through the write lock every transaction takes (BEGIN IMMEDIATE).
A row left in flight by a crash goes back to pending with ``possible_duplicate`` set: the one window in which a
recipient may get a second copy, recorded and reported.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import NamedTuple

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pipeline.delivery.backend import Outcome
from pipeline.store.tables import UTC_DT
from pipeline.store.tables import deliveries as t_del
from pipeline.store.tables import issues as t_iss
from pipeline.store.tables import subscribers as t_sub
from pipeline.store.tables import suppressions as t_sup

STATES = ("pending", "in_flight", "sent", "failed", "suppressed", "unknown")
OPEN_STATES = ("pending", "in_flight")
INSERT_CHUNK = 50_000


class ClaimedRow(NamedTuple):  # a thousand a batch: a tuple is built several times faster than a dataclass
    subscriber_id: int
    variant: str
    email: str
    token_version: int
    possible_duplicate: bool


@dataclass(frozen=True, kw_only=True)
class Claim:
    batch_id: str
    rows: tuple[ClaimedRow, ...]
    suppressed: tuple[int, ...]  # claimed, but no longer mailable: marked suppressed, never sent

    def __bool__(self) -> bool:
        return bool(self.rows or self.suppressed)


def new_worker_id() -> str:
    """host:pid:random, so a claim can be traced to its process and a dead one recognised."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claimer_is_gone(claimed_by: str | None) -> bool:
    """True when the claimer ran on this host and its process has ended. Other hosts: unknown, so False."""
    if not claimed_by:
        return True
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def find_issue(conn: Connection, digest: str, fire_at: datetime) -> int | None:
    return conn.execute(select(t_iss.c.id).where(t_iss.c.digest == digest, t_iss.c.fire_at == fire_at)).scalar()


def _issue_lock(conn: Connection, digest: str, fire_at: datetime) -> None:
    # PostgreSQL: serialise planners of one issue so the second waits and then finds the first's rows.
    # SQLite needs nothing: BEGIN IMMEDIATE already holds the database's write lock.
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"issue:{digest}:{fire_at.isoformat()}".encode()).digest()[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def open_issue(engine: Engine, digest: str, fire_at: datetime, period: tuple[datetime, datetime],
               plan_recipients: Callable[[Connection], Mapping[int, str]], *, at: datetime) -> tuple[int, bool]:
    """Find the issue of ``digest`` at ``fire_at``, or create it with all its delivery rows in one transaction.

    ``plan_recipients(conn)`` returns subscriber id -> variant key, read in the same transaction. It is called
    only when the issue is new. Returns (issue_id, created).
    """
    for _ in range(3):
        try:
            with engine.begin() as conn:
                _issue_lock(conn, digest, fire_at)
                existing = find_issue(conn, digest, fire_at)
                if existing is not None:
                    return existing, False
                issue_id = conn.execute(insert(t_iss).values(
                    digest=digest, fire_at=fire_at, period_start=period[0], period_end=period[1], planned_at=at,
                ).returning(t_iss.c.id)).scalar_one()
                assignments = plan_recipients(conn)
                # In variant order: claims walk the pending rows of ix_deliveries_issue_state in insertion order,
                # so each variant's rows then sit together and a claim for one variant finds them at once.
                by_variant: dict[str, list[int]] = {}
                for sid, key in assignments.items():
                    by_variant.setdefault(key, []).append(sid)
                _insert_pending(conn, issue_id, by_variant)
                if conn.dialect.name == "postgresql":
                    # Fresh statistics: planned against an "empty" table, each claim's join would scan every
                    # pending row per picked row (seen: minutes for 75,000 recipients instead of seconds).
                    conn.execute(text("ANALYZE deliveries"))
                return issue_id, True
        except IntegrityError:
            continue  # another planner created it between our look and our insert: look again
    with engine.connect() as conn:
        existing = find_issue(conn, digest, fire_at)
    if existing is None:
        raise RuntimeError(f"could not create or find issue {digest} at {fire_at.isoformat()}")
    return existing, False


def _insert_pending(conn: Connection, issue_id: int, by_variant: dict[str, list[int]]) -> None:
    """One pending row per recipient, variant by variant, each variant's in subscriber order: COPY on
    PostgreSQL, a plain executemany of tuples on SQLite (no per-row dicts or statement compilation)."""
    def rows():
        for key in sorted(by_variant):
            ids = by_variant[key]
            ids.sort()
            for sid in ids:
                yield issue_id, sid, key
    if conn.dialect.name == "postgresql":
        import psycopg

        cur = conn.connection.dbapi_connection.cursor()
        try:
            with cur.copy("COPY deliveries (issue_id, subscriber_id, variant, state, attempts, possible_duplicate) "
                          "FROM STDIN") as copy:
                for row in rows():
                    copy.write_row((*row, "pending", 0, False))
        except psycopg.IntegrityError as exc:  # e.g. a subscriber deleted meanwhile: open_issue plans again
            raise IntegrityError("COPY deliveries", None, exc) from exc
        finally:
            cur.close()
        return
    sql = ("INSERT INTO deliveries (issue_id, subscriber_id, variant, state, attempts, possible_duplicate) "
           "VALUES (?, ?, ?, 'pending', 0, 0)")
    it = rows()
    while chunk := list(islice(it, INSERT_CHUNK)):
        conn.exec_driver_sql(sql, chunk)


def claim_batch(engine: Engine, issue_id: int, *, limit: int, worker_id: str, at: datetime,
                variant: str | None = None, mailable_at: datetime | None = None) -> Claim:
    """Atomically take up to ``limit`` pending rows (of ``variant``, if given) for this worker.

    In the same transaction, rows whose subscriber has since unsubscribed, been suppressed or paused become
    ``suppressed`` and are not returned (invariant 2: an unsubscribe takes effect before the next batch).
    """
    batch_id = uuid.uuid4().hex[:16]
    conditions = [t_del.c.issue_id == issue_id, t_del.c.state == "pending"]
    if variant is not None:
        conditions.append(t_del.c.variant == variant)
    # Without ``variant``, the claim walks ix_deliveries_issue_state and stops after ``limit`` rows; open_issue
    # inserted the rows in variant order, so a batch holds one or two variants. With ``variant``, SQLite must
    # also skip the other variants' pending rows, which costs a scan per claim on a large issue.
    # A CTE, not "IN (subquery)": PostgreSQL may run such a subquery more than once, each time skipping the rows
    # the last run locked, and so claim more than ``limit`` rows. A locking CTE is evaluated exactly once.
    pick = (select(t_del.c.subscriber_id).where(*conditions).limit(limit)
            .with_for_update(skip_locked=True).cte("picked"))
    stmt = (update(t_del)
            .where(t_del.c.issue_id == issue_id, t_del.c.state == "pending",
                   t_del.c.subscriber_id == pick.c.subscriber_id)
            .values(state="in_flight", claimed_by=worker_id, claimed_at=at, batch_id=batch_id,
                    attempts=t_del.c.attempts + 1))
    with engine.begin() as conn:
        if not conn.execute(stmt).rowcount:
            return Claim(batch_id=batch_id, rows=(), suppressed=())
        # The claimed rows' contacts in one join on the batch (no list of 1,000 ids to bind), already in
        # variant order; whoever is no longer mailable is marked suppressed in this same transaction.
        found = conn.execute(_CLAIMED, {"issue_id": issue_id, "batch_id": batch_id, "when": mailable_at or at}).all()
        rows, gone = [], []
        for sid, key, dup, email, version, mailable in found:
            if mailable:
                rows.append(ClaimedRow(sid, key, email, version, bool(dup)))
            else:
                gone.append(sid)
        if gone:
            for i in range(0, len(gone), 1000):
                conn.execute(update(t_del)
                             .where(t_del.c.issue_id == issue_id, t_del.c.subscriber_id.in_(gone[i:i + 1000]))
                             .values(state="suppressed", reason="unsubscribed, suppressed or paused since planning"))
    return Claim(batch_id=batch_id, rows=tuple(rows), suppressed=tuple(gone))


_CLAIMED = (
    select(t_del.c.subscriber_id, t_del.c.variant, t_del.c.possible_duplicate, t_sub.c.email, t_sub.c.token_version,
           # Still mailable: confirmed, not suppressed, not paused (the same test as the eligible query).
           case((and_(t_sub.c.status == "confirmed", t_sup.c.email_key.is_(None),
                      or_(t_sub.c.paused_until.is_(None), t_sub.c.paused_until <= bindparam("when", type_=UTC_DT))),
                 1), else_=0).label("mailable"))
    .select_from(t_del)
    .outerjoin(t_sub, t_sub.c.id == t_del.c.subscriber_id)
    .outerjoin(t_sup, t_sup.c.email_key == t_sub.c.email_key)
    .where(t_del.c.issue_id == bindparam("issue_id"), t_del.c.state == "in_flight",
           t_del.c.batch_id == bindparam("batch_id"))
    .order_by(t_del.c.variant, t_del.c.subscriber_id)
)


def finish(engine: Engine, issue_id: int, batch_id: str, outcomes: Iterable[Outcome], *, at: datetime,
           variant: str | None = None, whole_batch: bool = False) -> dict[str, int]:
    """Record what the backend said about a claimed batch. Rows since recovered or taken by another worker are
    left alone.

    ``whole_batch``: the caller vouches that ``outcomes`` name every row it claimed in this batch. The largest
    group of outcomes is then recorded with one statement on the batch (after the others, by id), instead of
    by id lists.
    """
    groups: dict[tuple[str, str | None, str | None], list[int]] = {}
    for o in outcomes:
        if o.state not in ("sent", "failed", "unknown"):
            raise ValueError(f"unknown outcome state {o.state!r}")
        groups.setdefault((o.state, o.reason, o.provider_status), []).append(o.subscriber_id)
    done: dict[str, int] = {}
    ordered = sorted(groups.items(), key=lambda item: len(item[1]))
    # Only rows still in flight under this batch: a row that recovery has put back to pending (its sender was
    # presumed dead) stays pending and is sent again, flagged as a possible duplicate.
    with engine.begin() as conn:
        for n, ((state, reason, provider_status), ids) in enumerate(ordered, 1):
            values: dict = {"state": state, "reason": reason, "provider_status": provider_status}
            if state == "sent":
                values["sent_at"] = at
            if variant is not None:
                values["variant"] = variant
            where = [t_del.c.issue_id == issue_id, t_del.c.batch_id == batch_id, t_del.c.state == "in_flight"]
            if whole_batch and n == len(ordered):
                # Every other row of the batch is recorded already: what is still in flight is this group.
                result = conn.execute(update(t_del).where(*where).values(**values))
                done[state] = done.get(state, 0) + max(result.rowcount, 0)
                continue
            stmt = update(t_del).where(*where, t_del.c.subscriber_id.in_(bindparam("ids", expanding=True))).values(**values)
            for i in range(0, len(ids), 1000):
                result = conn.execute(stmt, {"ids": ids[i:i + 1000]})
                done[state] = done.get(state, 0) + max(result.rowcount, 0)
    return done


def recover_stale(engine: Engine, issue_id: int, *, older_than: datetime,
                  is_gone: Callable[[str | None], bool] | None = None) -> int:
    """Put in-flight rows back to pending, marked as possible duplicates, when their claim is older than
    ``older_than`` or ``is_gone(claimed_by)`` says the claimer has died. Returns how many."""
    with engine.begin() as conn:
        rows = conn.execute(select(t_del.c.subscriber_id, t_del.c.claimed_by, t_del.c.claimed_at).where(
            t_del.c.issue_id == issue_id, t_del.c.state == "in_flight")).all()
        stale = [r.subscriber_id for r in rows
                 if r.claimed_at is None or r.claimed_at < older_than or (is_gone is not None and is_gone(r.claimed_by))]
        for i in range(0, len(stale), 1000):
            conn.execute(update(t_del).where(
                t_del.c.issue_id == issue_id, t_del.c.state == "in_flight",
                t_del.c.subscriber_id.in_(stale[i:i + 1000])).values(
                state="pending", possible_duplicate=True, reason="in flight when a sender stopped; may be a duplicate"))
    return len(stale)


def requeue_failed(engine: Engine, issue_id: int, *, max_attempts: int) -> int:
    """Give failed rows another try, up to ``max_attempts`` in all. Unknown outcomes are never retried."""
    with engine.begin() as conn:
        return conn.execute(update(t_del).where(
            t_del.c.issue_id == issue_id, t_del.c.state == "failed", t_del.c.attempts < max_attempts,
        ).values(state="pending")).rowcount


def open_rows(engine: Engine, issue_id: int, states: Sequence[str] = ("pending",)) -> dict[int, str]:
    """subscriber id -> variant for rows in ``states``."""
    with engine.connect() as conn:
        return dict(conn.execute(select(t_del.c.subscriber_id, t_del.c.variant).where(
            t_del.c.issue_id == issue_id, t_del.c.state.in_(states))).all())


def reconcile(engine: Engine, issue_id: int, assignments: Mapping[int, str]) -> tuple[int, int]:
    """Bring pending rows in line with a fresh plan (content or topics changed since the first run).

    A pending row whose subscriber now has nothing to read becomes suppressed. Returns (changed, dropped).
    """
    current = open_rows(engine, issue_id)
    changed = [{"sid": sid, "v": assignments[sid]} for sid, v in current.items()
               if sid in assignments and assignments[sid] != v]
    dropped = sorted(sid for sid in current if sid not in assignments)
    if not changed and not dropped:
        return 0, 0
    with engine.begin() as conn:
        if changed:
            conn.execute(update(t_del).where(and_(
                t_del.c.issue_id == issue_id, t_del.c.state == "pending",
                t_del.c.subscriber_id == bindparam("sid"))).values(variant=bindparam("v")), changed)
        for i in range(0, len(dropped), 1000):
            conn.execute(update(t_del).where(
                t_del.c.issue_id == issue_id, t_del.c.state == "pending",
                t_del.c.subscriber_id.in_(dropped[i:i + 1000])).values(
                state="suppressed", reason="nothing in this issue for their topics any more"))
    return len(changed), len(dropped)


def pending_variants(engine: Engine, issue_id: int) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(t_del.c.variant).distinct().where(
            t_del.c.issue_id == issue_id, t_del.c.state == "pending")).scalars())


def counts(engine: Engine | Connection, issue_id: int) -> dict[str, int]:
    """Rows per state (every state present, zeros included), plus ``possible_duplicate``."""
    query = select(t_del.c.state, func.count()).where(t_del.c.issue_id == issue_id).group_by(t_del.c.state)
    dup = select(func.count()).where(t_del.c.issue_id == issue_id, t_del.c.possible_duplicate.is_(True))
    if isinstance(engine, Connection):
        found, dups = dict(engine.execute(query).all()), engine.execute(dup).scalar_one()
    else:
        with engine.connect() as conn:
            found, dups = dict(conn.execute(query).all()), conn.execute(dup).scalar_one()
    out = {s: int(found.get(s, 0)) for s in STATES}
    out["possible_duplicate"] = int(dups)
    return out


def complete_if_done(engine: Engine, issue_id: int, *, at: datetime) -> bool:
    """Stamp the issue complete once no row is pending or in flight. Returns whether it is complete."""
    with engine.begin() as conn:
        left = conn.execute(select(func.count()).where(
            t_del.c.issue_id == issue_id, t_del.c.state.in_(OPEN_STATES))).scalar_one()
        if left:
            return False
        conn.execute(update(t_iss).where(t_iss.c.id == issue_id, t_iss.c.completed_at.is_(None)).values(completed_at=at))
        return True
