"""Resuming an issue: who is still working on it, taking back claims of senders that stopped, retrying failures,
and bringing pending rows in line with a fresh plan. The ledger itself is in ``ledger``."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.engine import Engine

from pipeline.delivery.ledger import settle
from pipeline.store.tables import deliveries as t_del
from pipeline.store.tables import delivery_posts as t_posts


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


def recover_stale(engine: Engine, issue_id: int, *, older_than: datetime,
                  is_gone: Callable[[str | None], bool] | None = None) -> int:
    """Put in-flight rows back to pending when their claim is older than ``older_than`` or ``is_gone(claimed_by)``
    says the claimer has died. Rows of a batch that was posted are marked as possible duplicates; rows of a claim
    never posted went nowhere and are not. Returns how many rows went back."""
    with engine.begin() as conn:
        settle(conn, issue_id)  # batches known to have gone out whole: their rows are sent, not in doubt
        rows = conn.execute(select(t_del.c.subscriber_id, t_del.c.batch_id, t_del.c.claimed_by, t_del.c.claimed_at)
                            .where(t_del.c.issue_id == issue_id, t_del.c.state == "in_flight")).all()
        posted = set(conn.execute(select(t_posts.c.batch_id).where(t_posts.c.issue_id == issue_id)).scalars())
        stale: dict[bool, list[int]] = {True: [], False: []}
        for r in rows:
            if r.claimed_at is None or r.claimed_at < older_than or (is_gone is not None and is_gone(r.claimed_by)):
                stale[r.batch_id in posted].append(r.subscriber_id)
        for was_posted, ids in stale.items():
            values: dict = {"state": "pending", "batch_id": None}
            if was_posted:
                values.update(possible_duplicate=True, reason="in flight when a sender stopped; may be a duplicate")
            for i in range(0, len(ids), 1000):
                conn.execute(update(t_del).where(
                    t_del.c.issue_id == issue_id, t_del.c.state == "in_flight",
                    t_del.c.subscriber_id.in_(ids[i:i + 1000])).values(**values))
        if rows:  # markers of batches with nothing left in flight have served
            still = select(t_del.c.batch_id).where(t_del.c.issue_id == issue_id, t_del.c.state == "in_flight",
                                                   t_del.c.batch_id.is_not(None))
            conn.execute(delete(t_posts).where(t_posts.c.issue_id == issue_id, t_posts.c.outcome.is_(None),
                                               t_posts.c.batch_id.not_in(still)))
    return len(stale[True]) + len(stale[False])


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
                state="suppressed", reason="nothing in this issue for their topics any more", email=None))
    return len(changed), len(dropped)
