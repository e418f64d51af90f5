"""The delivery ledger: one row per recipient of an issue, fixed when the issue is first planned (``issue_rows``).

Rows move pending -> in_flight (claimed) -> sent | failed | unknown, or to suppressed when the subscriber is no
longer mailable; a batch the relay never took (``deferred`` outcomes) goes back to pending with the reason it
waits. Planning cuts each variant's recipients into numbered batches of one backend request; a sender
claims one batch at a time. Claims are atomic, so several workers share an issue without sending anyone twice: on
PostgreSQL through ``FOR UPDATE SKIP LOCKED``, on SQLite through the write lock every transaction takes (BEGIN
IMMEDIATE). A sender records one batch and marks its next as posted in the same transaction (``post``), so it never
has more than one batch posted and unrecorded. A row left in flight by a crash goes back to pending with ``possible_duplicate``
set: the one window in which a recipient may get a second copy, recorded and reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import NamedTuple

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.engine import Connection, Engine

from pipeline.delivery.backend import OUTCOME_STATES, Outcome
from pipeline.store.tables import UTC_DT
from pipeline.store.tables import deliveries as t_del
from pipeline.store.tables import delivery_posts as t_posts
from pipeline.store.tables import issues as t_iss
from pipeline.store.tables import subscribers as t_sub
from pipeline.store.tables import suppressions as t_sup

STATES = ("pending", "in_flight", "sent", "failed", "suppressed", "unknown")
OPEN_STATES = ("pending", "in_flight")


class ClaimedRow(NamedTuple):  # a thousand a batch: a tuple is built several times faster than a dataclass
    subscriber_id: int
    variant: str
    email: str
    token_version: int
    possible_duplicate: bool


# A claimed batch as read with its contacts: (subscriber_id, variant, possible_duplicate, email, token_version,
# mailable), in subscriber order.
BatchRows = tuple[tuple, ...]


@dataclass(frozen=True, kw_only=True)
class Claim:
    batch_id: str
    batch_no: int
    found: BatchRows  # every row claimed, mailable or not
    suppressed: tuple[int, ...]  # claimed, but no longer mailable: marked suppressed, never sent

    def __bool__(self) -> bool:
        return bool(self.found)

    @cached_property
    def rows(self) -> tuple[ClaimedRow, ...]:
        """The rows to send. A sender reads them by variant instead (``by_variant``), without a tuple per row."""
        return tuple(ClaimedRow(sid, key, email, version, bool(dup))
                     for sid, key, dup, email, version, mailable in self.found if mailable)

    def by_variant(self) -> dict[str, list[tuple[int, str, int]]]:
        """The rows to send as (subscriber_id, email, token_version), by variant, in subscriber order."""
        groups: dict[str, list[tuple[int, str, int]]] = {}
        for sid, key, _dup, email, version, mailable in self.found:
            if mailable:
                group = groups.get(key)
                if group is None:
                    group = groups[key] = []
                group.append((sid, email, version))
        return groups


@dataclass(frozen=True, kw_only=True)
class Finished:
    """A claimed batch's outcomes, to record."""

    batch_no: int
    batch_id: str
    outcomes: Sequence[Outcome]


_NEXT_BATCH = (select(t_del.c.batch_no)
               .where(t_del.c.issue_id == bindparam("issue_id"),
                      tuple_(t_del.c.batch_no, t_del.c.subscriber_id) > tuple_(bindparam("batch_no"), bindparam("sid")),
                      t_del.c.state == "pending")
               .order_by(t_del.c.batch_no, t_del.c.subscriber_id).limit(1))
# deliver_at: local: only rows due within the window (from, by]; rows with no due time are due at once.
_DUE = "(due_at IS NULL OR (due_at <= :due_by AND due_at >= :due_from))"
_NEXT_DUE_BATCH = _NEXT_BATCH.where(text(_DUE).bindparams(bindparam("due_by", type_=UTC_DT),
                                                         bindparam("due_from", type_=UTC_DT)))
END_OF_BATCH = 2**31 - 1  # a subscriber id past every other: (n, END_OF_BATCH) is "after all of batch n"


# The claimed rows with their contacts and whether each is still mailable: confirmed, not suppressed, not paused
# (the same test as the eligible query).
_CLAIMED = (
    select(t_del.c.subscriber_id, t_del.c.variant, t_del.c.possible_duplicate, t_sub.c.email, t_sub.c.token_version,
           case((and_(t_sub.c.status == "confirmed", t_sup.c.email_key.is_(None),
                      or_(t_sub.c.paused_until.is_(None), t_sub.c.paused_until <= bindparam("when", type_=UTC_DT))),
                 1), else_=0).label("mailable"))
    .select_from(t_del)
    .outerjoin(t_sub, t_sub.c.id == t_del.c.subscriber_id)
    .outerjoin(t_sup, t_sup.c.email_key == t_sub.c.email_key)
    .where(t_del.c.issue_id == bindparam("issue_id"), t_del.c.batch_no == bindparam("batch_no"),
           t_del.c.state == "in_flight", t_del.c.batch_id == bindparam("batch_id"))
    .order_by(t_del.c.subscriber_id)
)


# The claim, by physical row id: cheaper than joining the picked rows back through the primary key. On PostgreSQL
# the picked rows are locked with SKIP LOCKED, so two workers never wait on or take the same rows; ARRAY(...) is
# evaluated once, where "IN (subquery)" may run again and, skipping the rows its last run locked, claim more than
# ``limit``. On SQLite the write lock (BEGIN IMMEDIATE) already keeps claims apart.
_CLAIM_SET = ("SET state = 'in_flight', claimed_by = :worker, claimed_at = :at, batch_id = :batch_id, "
              "attempts = attempts + 1")
_CLAIM_PICK = ("SELECT {rid} FROM deliveries WHERE issue_id = :issue_id AND batch_no = :batch_no AND state = 'pending' "
               "ORDER BY subscriber_id LIMIT :limit")
_CLAIM_PG = text(f"UPDATE deliveries {_CLAIM_SET} WHERE ctid = ANY(ARRAY({_CLAIM_PICK.format(rid='ctid')} "
                 "FOR UPDATE SKIP LOCKED)) AND state = 'pending'").bindparams(bindparam("at", type_=UTC_DT))
_CLAIM_SQLITE = text(f"UPDATE deliveries {_CLAIM_SET} WHERE rowid IN ({_CLAIM_PICK.format(rid='rowid')})"
                     ).bindparams(bindparam("at", type_=UTC_DT))
_DUE_PICK = _CLAIM_PICK.replace("state = 'pending'", f"state = 'pending' AND {_DUE}", 1)
_DUE_BINDS = (bindparam("at", type_=UTC_DT), bindparam("due_by", type_=UTC_DT), bindparam("due_from", type_=UTC_DT))
_CLAIM_DUE_PG = text(f"UPDATE deliveries {_CLAIM_SET} WHERE ctid = ANY(ARRAY({_DUE_PICK.format(rid='ctid')} "
                     "FOR UPDATE SKIP LOCKED)) AND state = 'pending'").bindparams(*_DUE_BINDS)
_CLAIM_DUE_SQLITE = text(f"UPDATE deliveries {_CLAIM_SET} WHERE rowid IN ({_DUE_PICK.format(rid='rowid')})"
                         ).bindparams(*_DUE_BINDS)


# A claimed batch's rows with their contacts as planned; who of them changed since (subscriber_changes, from the
# issue's changes_since on) is looked up afresh through _CLAIMED. Seen: a third of the time of joining every
# row to its subscriber. An issue without contacts (planned before revision 0003, or left unfinished long enough to
# drop them: issue_rows.CONTACTS_KEPT) has no changes_since and gives -1: look up everyone.
_AS_PLANNED = text("SELECT subscriber_id, variant, possible_duplicate, email, token_version, 1 FROM deliveries "
                   "WHERE issue_id = :issue_id AND batch_no = :batch_no AND state = 'in_flight' "
                   "AND batch_id = :batch_id ORDER BY subscriber_id")
_CHANGED = text("SELECT c.subscriber_id FROM subscriber_changes c JOIN issues i ON i.id = :issue_id "
                "WHERE c.subscriber_id BETWEEN :lo AND :hi AND c.changed_at >= i.changes_since "
                "UNION ALL SELECT -1 FROM issues WHERE id = :issue_id AND changes_since IS NULL")
_RECHECK = _CLAIMED.where(t_del.c.subscriber_id.in_(bindparam("ids", expanding=True)))


def _contacts(conn: Connection, issue_id: int, batch_no: int, batch_id: str, when: datetime) -> BatchRows:
    """The claimed rows as (subscriber_id, variant, possible_duplicate, email, token_version, mailable)."""
    keys = {"issue_id": issue_id, "batch_no": batch_no, "batch_id": batch_id, "when": when}
    planned = _normalise(conn.execute(_AS_PLANNED, keys))
    if not planned:
        return planned
    recheck = {row[0] for row in planned if row[3] is None}  # requeued or recovered rows: contact cleared
    changed = set(conn.execute(_CHANGED, {"issue_id": issue_id, "lo": planned[0][0], "hi": planned[-1][0]}).scalars())
    if -1 in changed or len(recheck | changed) * 2 > len(planned):
        return _normalise(conn.execute(_CLAIMED, keys))
    if changed:
        recheck |= changed & {row[0] for row in planned}
    if not recheck:
        return planned
    fresh = {row[0]: row for row in _normalise(conn.execute(_RECHECK, {**keys, "ids": sorted(recheck)}))}
    # A row the recheck no longer finds went with its subscriber (deleted since): it is dropped, as the full
    # read would drop it.
    return tuple(fresh[row[0]] if row[0] in recheck else row for row in planned
                 if row[0] not in recheck or row[0] in fresh)


def _no_flush_wait(conn: Connection) -> None:
    """On PostgreSQL, let this transaction's commit return before its WAL reaches the disk: for writes that a
    database crash may lose without harm. Under a send's load a flush can take tens of milliseconds."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL synchronous_commit = off"))


def _normalise(result) -> BatchRows:
    # The driver's own tuples, without building SQLAlchemy rows: a thousand a batch. Claim reads the
    # flags as truth values, whatever type the driver gives them.
    try:
        return tuple(result.cursor.fetchall())
    finally:
        result.close()


def claim_next(engine: Engine, issue_id: int, after: tuple[int, int], *, limit: int, worker_id: str,
               at: datetime, mailable_at: datetime | None = None,
               due: tuple[datetime, datetime] | None = None) -> Claim | None:
    """Claim up to ``limit`` pending rows of the next batch after position ``after`` = (batch_no, subscriber_id),
    or else of the first one from the start (rows recovered or requeued behind us). None when none is left.

    Rows whose subscriber has since unsubscribed, been suppressed or paused become ``suppressed`` right after the
    claim, before the batch can be posted (invariant 2). The claim is not yet "posted": until ``post`` records that its sending starts, a
    crash leaves its rows to go back to pending without a duplicate flag, since nothing of it went out.

    ``due`` = (from, by): take only rows with no due time or one in that window (deliver_at: local).
    """
    due_binds = {} if due is None else {"due_from": due[0], "due_by": due[1]}
    next_batch = _NEXT_BATCH if due is None else _NEXT_DUE_BATCH
    batch_id = uuid.uuid4().hex[:16]
    with engine.begin() as conn:
        # A claim lost in a database crash is harmless (nothing of it was posted), and the commit of ``post``,
        # which is synchronous, flushes this one too.
        _no_flush_wait(conn)
        position, wrapped, batch_no = after, after == (-1, -1), None
        for _ in range(1000):  # each miss is a batch another worker claimed between our look and our claim
            batch_no = conn.execute(next_batch, {"issue_id": issue_id, "batch_no": position[0],
                                                 "sid": position[1], **due_binds}).scalar()
            if batch_no is None:
                if wrapped:
                    return None
                position, wrapped = (-1, -1), True
                continue
            if _take(conn, issue_id, batch_no, batch_id, limit=limit, worker_id=worker_id, at=at, due=due_binds):
                break
            position, batch_no = (batch_no, END_OF_BATCH), None
    if batch_no is None:
        return None
    # The contacts of the claimed rows, read after the claim's commit: on SQLite the write lock need not be held
    # for it, and reading later only narrows invariant 2's window.
    with engine.connect().execution_options(read_only=True) as conn:
        found = _contacts(conn, issue_id, batch_no, batch_id, mailable_at or at)
    gone = [row[0] for row in found if not row[5]]
    if gone:
        with engine.begin() as conn:
            for i in range(0, len(gone), 1000):
                conn.execute(update(t_del).where(
                    t_del.c.issue_id == issue_id, t_del.c.batch_id == batch_id, t_del.c.state == "in_flight",
                    t_del.c.subscriber_id.in_(gone[i:i + 1000])).values(
                    state="suppressed", reason="unsubscribed, suppressed or paused since planning", email=None))
    return Claim(batch_id=batch_id, batch_no=batch_no, found=found, suppressed=tuple(gone))


def post(engine: Engine, issue_id: int, *, finished: Finished | None, posting: Claim | None,
         at: datetime) -> tuple[dict[str, int], bool]:
    """In one transaction: record ``finished`` and note that ``posting`` is about to go to the backend. A sender
    calls this between batches, so at most one of its batches is ever posted and unrecorded: the in-flight batch
    of invariant 1. Returns (what was recorded, by state; whether ``finished`` still needs ``settle``).

    When the backend took the whole of ``finished`` alike (the usual case), only its marker records that, and the
    thousand rows follow later in ``settle``, off the path between two requests.
    """
    deferred = False
    with engine.begin() as conn:
        done: dict[str, int] = {}
        if finished is not None:
            status = _all_sent(finished)
            if status is not None and conn.execute(update(t_posts).where(
                    t_posts.c.issue_id == issue_id, t_posts.c.batch_id == finished.batch_id,
                    t_posts.c.outcome.is_(None)).values(
                    outcome="sent", provider_status=status[0], finished_at=at)).rowcount:
                done, deferred = {"sent": status[1]}, True
            else:
                done = _record(conn, issue_id, finished, at=at)
        if posting is not None and posting.found:
            conn.execute(insert(t_posts).values(issue_id=issue_id, batch_id=posting.batch_id,
                                                batch_no=posting.batch_no, posted_at=at))
        return done, deferred


def _all_sent(finished: Finished) -> tuple[str | None, int] | None:
    """(provider status, how many) when every outcome is a plain "sent" with one status; else None."""
    outcomes = finished.outcomes
    if not outcomes:
        return None
    status = outcomes[0].provider_status
    for o in outcomes:
        if o.state != "sent" or o.reason is not None or o.provider_status != status:
            return None
    return status, len(outcomes)


def settle(engine: Engine | Connection, issue_id: int, batch_ids: Sequence[str] | None = None) -> int:
    """Bring the rows of batches whose marker says "sent" in line with it, and drop those markers: the given
    batches, or every such batch of the issue (recovery, end of a send). Returns how many rows changed."""
    if isinstance(engine, Engine):
        with engine.begin() as conn:
            _no_flush_wait(conn)  # lost in a crash, the marker still says "sent", and recovery settles again
            return settle(conn, issue_id, batch_ids)
    conn = engine
    query = select(t_posts.c.batch_id, t_posts.c.batch_no, t_posts.c.provider_status, t_posts.c.finished_at).where(
        t_posts.c.issue_id == issue_id, t_posts.c.outcome == "sent")
    if batch_ids is not None:
        if not batch_ids:
            return 0
        query = query.where(t_posts.c.batch_id.in_(list(batch_ids)))
    changed = 0
    for batch_id, batch_no, status, finished_at in conn.execute(query).all():
        changed += conn.execute(update(t_del).where(
            t_del.c.issue_id == issue_id, t_del.c.batch_no == batch_no, t_del.c.batch_id == batch_id,
            t_del.c.state == "in_flight").values(
            state="sent", sent_at=finished_at, provider_status=status, reason=None, email=None)).rowcount
        conn.execute(delete(t_posts).where(t_posts.c.issue_id == issue_id, t_posts.c.batch_id == batch_id))
    return changed


def release(engine: Engine, issue_id: int, claim: Claim) -> int:
    """Give back a claim that was never posted: its rows go back to pending as they were."""
    with engine.begin() as conn:
        return conn.execute(update(t_del).where(
            t_del.c.issue_id == issue_id, t_del.c.batch_no == claim.batch_no, t_del.c.batch_id == claim.batch_id,
            t_del.c.state == "in_flight").values(
            state="pending", batch_id=None, claimed_by=None, claimed_at=None, attempts=t_del.c.attempts - 1)).rowcount


def _take(conn: Connection, issue_id: int, batch_no: int, batch_id: str, *, limit: int, worker_id: str,
          at: datetime, due: dict[str, datetime] | None = None) -> int:
    """Mark up to ``limit`` pending rows of one batch in flight under ``batch_id``; returns how many."""
    values = {"issue_id": issue_id, "batch_no": batch_no, "limit": limit, "worker": worker_id, "at": at,
              "batch_id": batch_id, **(due or {})}
    pg = conn.dialect.name == "postgresql"
    query = (_CLAIM_PG if pg else _CLAIM_SQLITE) if not due else (_CLAIM_DUE_PG if pg else _CLAIM_DUE_SQLITE)
    return conn.execute(query, values).rowcount


def finish(engine: Engine, issue_id: int, finished: Finished, *, at: datetime) -> dict[str, int]:
    """Record what the backend said about a claimed batch (see ``post``)."""
    with engine.begin() as conn:
        return _record(conn, issue_id, finished, at=at)


def _record(conn: Connection, issue_id: int, finished: Finished, *, at: datetime) -> dict[str, int]:
    """Rows since recovered or taken by another worker are left alone. ``finished.outcomes`` name every row the
    batch claimed and sent, so the largest group is recorded with one statement on the batch, after the others."""
    groups: dict[tuple[str, str | None, str | None], list[int]] = {}
    for o in finished.outcomes:
        if o.state not in OUTCOME_STATES:
            raise ValueError(f"unknown outcome state {o.state!r}")
        groups.setdefault((o.state, o.reason, o.provider_status), []).append(o.subscriber_id)
    done: dict[str, int] = {}
    conn.execute(delete(t_posts).where(t_posts.c.issue_id == issue_id, t_posts.c.batch_id == finished.batch_id))
    ordered = sorted(groups.items(), key=lambda item: len(item[1]))
    # Only rows still in flight under this batch: a row that recovery has put back to pending (its sender was
    # presumed dead) stays pending and is sent again, flagged as a possible duplicate.
    where = [t_del.c.issue_id == issue_id, t_del.c.batch_no == finished.batch_no,
             t_del.c.batch_id == finished.batch_id, t_del.c.state == "in_flight"]
    for n, ((state, reason, provider_status), ids) in enumerate(ordered, 1):
        values: dict = {"state": state, "reason": reason, "provider_status": provider_status, "email": None}
        if state == "sent":
            values["sent_at"] = at
        elif state == "deferred":  # back to pending, as if never claimed, with the reason it waits
            values.update(state="pending", batch_id=None, claimed_by=None, claimed_at=None,
                          attempts=t_del.c.attempts - 1)
        if n == len(ordered):
            # Every other row of the batch is recorded already: what is still in flight is this group.
            result = conn.execute(update(t_del).where(*where).values(**values))
            done[state] = done.get(state, 0) + max(result.rowcount, 0)
            continue
        stmt = update(t_del).where(*where, t_del.c.subscriber_id.in_(bindparam("ids", expanding=True))).values(**values)
        for i in range(0, len(ids), 1000):
            result = conn.execute(stmt, {"ids": ids[i:i + 1000]})
            done[state] = done.get(state, 0) + max(result.rowcount, 0)
    return done


def counts(engine: Engine | Connection, issue_id: int) -> dict[str, int]:
    """Rows per state (every state present, zeros included), plus ``possible_duplicate``. Rows of a batch whose
    marker already says "sent" (not yet settled) count as sent."""
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            return counts(conn, issue_id)
    return _with_markers(engine, issue_id, _state_counts(engine, issue_id))


def _state_counts(conn: Connection, issue_id: int) -> dict[str, int]:
    """Rows per state as stored, and ``possible_duplicate``: one pass over the issue's rows."""
    found = {s: 0 for s in STATES} | {"possible_duplicate": 0}
    for state, n, flagged in conn.execute(
            select(t_del.c.state, func.count(), func.count(case((t_del.c.possible_duplicate.is_(True), 1))))
            .where(t_del.c.issue_id == issue_id).group_by(t_del.c.state)):
        found[state] = int(n)
        found["possible_duplicate"] += int(flagged)
    return found


def _with_markers(conn: Connection, issue_id: int, found: dict[str, int]) -> dict[str, int]:
    settled = 0
    for batch_no, batch_id in conn.execute(select(t_posts.c.batch_no, t_posts.c.batch_id).where(
            t_posts.c.issue_id == issue_id, t_posts.c.outcome == "sent")).all():  # a few at most, by the batch index
        settled += conn.execute(select(func.count()).where(
            t_del.c.issue_id == issue_id, t_del.c.batch_no == batch_no, t_del.c.batch_id == batch_id,
            t_del.c.state == "in_flight")).scalar_one()
    return found | {"sent": found["sent"] + settled, "in_flight": found["in_flight"] - settled}


def close_issue(engine: Engine, issue_id: int, *, at: datetime) -> tuple[bool, dict[str, int]]:
    """Stamp the issue complete once no row is pending or in flight and its period has ended by ``at`` (the real
    time): an issue sent early on purpose (``digest send --at`` a future time ``--force``) stays open, so it is
    never recorded as covering a period that had not ended. Returns whether it is complete, and the counts
    ``counts`` gives, from the same pass over the rows (at the end of a send, each pass reads every row)."""
    with engine.begin() as conn:
        found = _state_counts(conn, issue_id)
        period_end = conn.execute(select(t_iss.c.period_end).where(t_iss.c.id == issue_id)).scalar()
        complete = not any(found[s] for s in OPEN_STATES) and (period_end is None or period_end <= at)
        if complete:
            conn.execute(update(t_iss).where(t_iss.c.id == issue_id, t_iss.c.completed_at.is_(None))
                         .values(completed_at=at))
        return complete, _with_markers(conn, issue_id, found)


def pending_waves(engine: Engine | Connection, issue_id: int) -> list[tuple[datetime, int]]:
    """(due time, pending rows) of an issue's rows that have a due time (deliver_at: local), earliest first."""
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            return pending_waves(conn, issue_id)
    rows = engine.execute(select(t_del.c.due_at, func.count()).where(
        t_del.c.issue_id == issue_id, t_del.c.state == "pending", t_del.c.due_at.is_not(None))
        .group_by(t_del.c.due_at).order_by(t_del.c.due_at))
    return [(due, n) for due, n in rows]


def wave_counts(conn: Connection, issue_id: int) -> list[tuple[datetime, dict[str, int]]]:
    """Rows by state of each wave (due time) of a deliver_at: local issue, earliest first; [] for any other."""
    rows = conn.execute(select(t_del.c.due_at, t_del.c.state, func.count()).where(
        t_del.c.issue_id == issue_id, t_del.c.due_at.is_not(None)).group_by(t_del.c.due_at, t_del.c.state))
    out: dict[datetime, dict[str, int]] = {}
    for due, state, n in rows:
        out.setdefault(due, {})[state] = n
    return sorted(out.items())


WAITING_REASON = "not sent yet"


def reasons(engine: Engine | Connection, issue_id: int, found: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Why rows are failed, unknown, waiting (pending) or in flight, as (reason, how many), most first, by state
    ("waiting", "in flight" for the last two). ``found`` are the issue's counts: states with no rows are not read,
    so a finished issue costs nothing more."""
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            return reasons(conn, issue_id, found)
    wanted = [s for s in ("failed", "unknown", *OPEN_STATES) if found.get(s)]
    out: dict[str, list[tuple[str, int]]] = {}
    if not wanted:
        return out
    tally: dict[str, dict[str, int]] = {}
    for state, reason, n in engine.execute(
            select(t_del.c.state, t_del.c.reason, func.count())
            .where(t_del.c.issue_id == issue_id, t_del.c.state.in_(wanted)).group_by(t_del.c.state, t_del.c.reason)):
        key = {"pending": "waiting", "in_flight": "in flight"}.get(state, state)
        if state == "in_flight":
            reason = "being sent now"  # the reason it had waited, if any, no longer holds
        text_ = reason or (WAITING_REASON if key == "waiting" else "no reason recorded")
        tally.setdefault(key, {})[text_] = tally.get(key, {}).get(text_, 0) + int(n)
    for key, by_reason in tally.items():
        out[key] = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    return out
