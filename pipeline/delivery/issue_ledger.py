"""One issue's rows in the delivery ledger, behind one small interface: opening it (``issue_rows``), claiming,
posting and recording batches (``ledger``), and recovering what a crash left behind (``recovery``).

A sender holds one ``IssueLedger`` and calls nothing else in the ledger; the SQL stays in those three modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from pipeline.delivery import issue_rows, ledger, recovery

STATES = ledger.STATES
Claim = ledger.Claim
Finished = ledger.Finished
ByTopics = issue_rows.ByTopics
new_worker_id = recovery.new_worker_id


def find(conn: Connection, digest: str, fire_at: datetime) -> int | None:
    """The id of the issue of ``digest`` at ``fire_at``, if it was ever opened."""
    return issue_rows.find_issue(conn, digest, fire_at)


class IssueLedger:
    def __init__(self, engine: Engine, issue_id: int):
        self.engine, self.issue_id = engine, issue_id

    @classmethod
    def open(cls, engine: Engine, digest: str, fire_at: datetime, period: tuple[datetime, datetime],
             plan_recipients: Callable[[Connection], ByTopics], *, at: datetime,
             batch_size: int) -> tuple[IssueLedger, bool, int]:
        """Find the issue, or create it with its rows: (ledger, created by this call, rows planned by this call)."""
        issue_id, created, planned = issue_rows.open_issue(engine, digest, fire_at, period, plan_recipients,
                                                           at=at, batch_size=batch_size)
        return cls(engine, issue_id), created, planned

    # -- resuming ------------------------------------------------------------------------------------------------

    def recover(self, *, older_than: datetime, max_attempts: int) -> int:
        """Give back claims whose sender is gone (flagged possible duplicates) and failures worth another try."""
        recovered = recovery.recover_stale(self.engine, self.issue_id, older_than=older_than,
                                           is_gone=recovery.claimer_is_gone)
        recovery.requeue_failed(self.engine, self.issue_id, max_attempts=max_attempts)
        return recovered

    def open_rows(self) -> dict[int, str]:
        return recovery.open_rows(self.engine, self.issue_id)

    def reconcile(self, assignments: Mapping[int, str]) -> tuple[int, int]:
        return recovery.reconcile(self.engine, self.issue_id, assignments)

    # -- sending -------------------------------------------------------------------------------------------------

    def claim_next(self, after: tuple[int, int], *, limit: int, worker_id: str, at: datetime,
                   mailable_at: datetime, due: tuple[datetime, datetime] | None = None) -> Claim | None:
        return ledger.claim_next(self.engine, self.issue_id, after, limit=limit, worker_id=worker_id, at=at,
                                 mailable_at=mailable_at, due=due)

    def post(self, *, finished: Finished | None, posting: Claim | None, at: datetime):
        return ledger.post(self.engine, self.issue_id, finished=finished, at=at, posting=posting)

    def release(self, claim: Claim) -> int:
        return ledger.release(self.engine, self.issue_id, claim)

    def finish(self, finished: Finished, *, at: datetime) -> dict[str, int]:
        return ledger.finish(self.engine, self.issue_id, finished, at=at)

    def settle(self, batch_ids: Sequence[str]) -> int:
        return ledger.settle(self.engine, self.issue_id, batch_ids)

    # -- reading and closing -------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return ledger.counts(self.engine, self.issue_id)

    def close(self, *, at: datetime) -> tuple[bool, dict[str, int]]:
        return ledger.close_issue(self.engine, self.issue_id, at=at)

    def pending_waves(self) -> list[tuple[datetime, int]]:
        return ledger.pending_waves(self.engine, self.issue_id)

    def reasons(self, found: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
        return ledger.reasons(self.engine, self.issue_id, found)


def counts_in(conn: Connection, issue_id: int) -> dict[str, int]:
    """Rows of an issue by state, read on the caller's connection (a dry run's read-only look)."""
    return ledger.counts(conn, issue_id)
