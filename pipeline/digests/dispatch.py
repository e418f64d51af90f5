"""Acting on a send plan: claim batches, prepare them, hand them to the backend, record what came back.

Pipelined: while one batch is with the backend (on a thread), the next ones are claimed and prepared (their links
built and requests encoded, in a worker process for a large issue). Recording a batch and marking the next as
posted is one transaction (``IssueLedger.post``), so at most one batch is ever posted and unrecorded; claims not
yet posted are given back if we stop.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from pipeline.delivery.issue_ledger import Claim, Finished, IssueLedger
from pipeline.digests.batches import BatchSender, Group

log = logging.getLogger("pipeline.digests.send")
SETTLE_BACKLOG = 8


def _quietly(action: Callable[[], object], issue_id: int, claim: Claim | None) -> None:
    """Tidy up a batch while stopping, if we can. If not, recovery will (and flag it, if it was posted)."""
    try:
        action()
    except BaseException:  # noqa: BLE001
        log.warning("could not tidy up a batch while stopping; a later run recovers it",
                    extra={"action": "digest_batch_unrecorded", "issue_id": issue_id,
                           "batch_id": claim.batch_id if claim is not None else None})


def dispatch(issue: IssueLedger, sender: BatchSender, *, name: str, limit: int, worker_id: str,
             clock: Callable[[], datetime], mailable_at: datetime, stop: threading.Event | None = None,
             on_batch: Callable[..., None] | None = None, due: tuple[datetime, datetime] | None = None) -> int:
    """Send every pending batch of ``issue`` (until ``stop`` or a halt); returns how many were sent now."""
    issue_id = issue.issue_id
    sent_now = 0

    def recorded(done: dict[str, int], claim: Claim, variants: int) -> None:
        nonlocal sent_now
        sent_now += done.get("sent", 0)
        if on_batch is not None:
            on_batch(suppressed=len(claim.suppressed), **done)
        log.info("digest batch sent", extra={"action": "digest_batch_sent", "digest": name, "issue_id": issue_id,
                                              "batch_id": claim.batch_id, "variants": variants, **done})

    limit = max(1, limit)
    ahead = 2 if sender.worker is not None else 1  # claims prepared ahead of the one on the wire
    cursor = (-1, -1)
    upcoming: deque[Future] = deque()  # of (claim, its prepared groups when ready) or None: nothing left
    exhausted = False

    def claim_one() -> tuple[Claim, Callable[[], list[Group]]] | None:
        # On the claiming thread, one claim after another: a claim's database round trips overlap the
        # recording of the last batch and the sending of the one on the wire.
        nonlocal cursor
        claim = issue.claim_next(cursor, limit=limit, worker_id=worker_id, at=clock(), mailable_at=mailable_at,
                                 due=due)
        if claim is None:
            return None
        cursor = (claim.batch_no, claim.found[-1][0])
        return claim, sender.start(claim)

    def claim_ahead() -> None:
        while not exhausted and len(upcoming) < ahead:
            upcoming.append(claiming.submit(claim_one))

    def next_claim():
        nonlocal exhausted
        while upcoming:
            got = upcoming.popleft().result()
            if got is not None:
                return got
            exhausted = True
        return None

    def give_back(future: Future) -> None:
        got = future.result()
        if got is not None:
            issue.release(got[0])

    inflight: tuple[Claim, int, Future] | None = None  # claim, its variant groups, its outcomes
    # Batches recorded by their marker alone, their rows not yet brought in line. Settling runs on its own
    # thread and connection, off the path between two requests (on PostgreSQL it takes longer than a request);
    # what piles up meanwhile is settled together, and the loop waits rather than let more than SETTLE_BACKLOG pile up.
    unsettled: list[str] = []
    settled: Future | None = None

    def settle_some(wait: bool) -> None:
        nonlocal settled
        if settled is not None and (wait or settled.done() or len(unsettled) >= SETTLE_BACKLOG):
            settled.result()
            settled = None
        if settled is None and unsettled:
            settled = settling.submit(issue.settle, list(unsettled))
            unsettled.clear()

    with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-send") as sending,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-claim") as claiming,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-settle") as settling):
        try:
            claim_ahead()
            while upcoming or inflight is not None:
                finished = None
                if inflight is not None:
                    finished = Finished(batch_no=inflight[0].batch_no, batch_id=inflight[0].batch_id,
                                        outcomes=inflight[2].result())
                if ((stop is not None and stop.is_set()) or sender.halt is not None) and not exhausted:
                    exhausted = True  # claim no more; what was claimed ahead goes back to pending, unflagged
                    while upcoming:
                        give_back(upcoming.popleft())
                nxt = next_claim()
                groups = nxt[1]() if nxt is not None else None
                done, deferred = issue.post(finished=finished, at=clock(),
                                            posting=nxt[0] if nxt is not None else None)
                if inflight is not None:
                    recorded(done, inflight[0], inflight[1])
                    if deferred:
                        unsettled.append(inflight[0].batch_id)
                    inflight = None
                if nxt is not None:
                    inflight = (nxt[0], len(groups), sending.submit(sender.deliver, groups))
                claim_ahead()
                settle_some(wait=False)
            while settled is not None or unsettled:
                settle_some(wait=True)
        except BaseException:
            for future in upcoming:  # claimed, never posted: back to pending, unflagged
                _quietly(lambda future=future: give_back(future), issue_id, None)
            if inflight is not None:  # record what already went out, so a re-run does not flag it
                claim, _groups, future = inflight
                _quietly(lambda: issue.finish(Finished(
                    batch_no=claim.batch_no, batch_id=claim.batch_id, outcomes=future.result()), at=clock()),
                    issue_id, claim)
            raise
        finally:
            claiming.shutdown(wait=True)  # before the worker goes: a claim in progress may be handing it work
            sender.close()
            if settled is not None:
                _quietly(settled.result, issue_id, None)
            if unsettled:
                _quietly(lambda: issue.settle(unsettled), issue_id, None)
    return sent_now
