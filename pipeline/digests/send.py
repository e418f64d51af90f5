"""Send one issue of a digest: plan, fix the recipients in the ledger, render each variant once, deliver in batches.

Idempotent and resumable: the issue and its recipients are fixed on the first run; a later run (after a crash,
or a second scheduler) only finishes what is left. Several workers can run it at once on PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from pipeline.content.model import Library
from pipeline.delivery import issue_rows, ledger, recovery
from pipeline.delivery.backend import Backend, Outcome, Recipient, RenderedVariant
from pipeline.digests import archive
from pipeline.digests.batch_worker import BatchWorker, WorkerLost
from pipeline.digests.message import RecipientBuilder, example_substitutions, issue_meta
from pipeline.digests.plan import (
    IssuePlan,
    PlanEntry,
    generic_variant,
    issue_period,
    plan_by_topics,
    plan_issue,
)
from pipeline.digests.render import DigestRenderer
from pipeline.errors import DeliveryError, DeliveryHalted, DeliverySetupError, DeliveryUnknown, InputError
from pipeline.schedules import Schedule
from pipeline.settings import Settings
from pipeline.store.tables import subscribers as t_sub
from pipeline.subscribers import repository
from pipeline.subscribers.model import split_topics

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(minutes=30)
WORKER_MIN_RECIPIENTS = 20_000
MAX_ATTEMPTS = 3
SETTLE_BACKLOG = 8
MAX_REASON_LINES = 10


@dataclass(frozen=True, kw_only=True)
class SendReport:
    digest: str
    fire_at: datetime
    period_start: datetime
    period_end: datetime
    dry_run: bool
    issue_id: int | None = None
    created: bool = False  # this run planned the issue
    recipients: int = 0  # fixed in the ledger (dry run: who would be)
    variants: int = 0
    articles: int = 0
    sent_now: int = 0
    already_sent: int = 0
    skipped_empty: int = 0  # eligible, but nothing in this issue for their topics
    suppressed: int = 0  # dropped since planning (all runs)
    failed: int = 0
    unknown: int = 0
    possible_duplicates: int = 0
    recovered: int = 0
    complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # pending after this run: a later run sends them
    elsewhere: int = 0  # in flight with another sender when this run ended (it finishes them)
    reasons: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # ledger.reasons
    halted: str | None = None  # why this run stopped early (the relay stayed away, or a setting is wrong)
    setup_error: bool = False  # the halt names a setting to fix

    @property
    def ok(self) -> bool:
        """Finished for everyone: each recipient sent, dropped, or failed for a reason of their own."""
        return self.dry_run or ((self.complete or not self.waiting) and not self.unknown and self.halted is None)

    def problems(self) -> list[str]:
        """Why the run did not finish the issue, for stderr (empty when ``ok``)."""
        if self.ok:
            return []
        n = self.waiting
        people = f"{n} recipient{'s are' if n != 1 else ' is'} waiting"
        if self.halted is not None and self.setup_error:
            return [self.halted, f"Nobody was marked failed; {people}; fix the setting and run the send again."]
        if self.halted is not None:
            return [f"{self.halted}; {people}; the next run will send them."]
        if self.waiting:
            return [f"The issue is not complete: {people}; run the send again to finish it."]
        return [f"{self.unknown} recipient{'s have' if self.unknown != 1 else ' has'} an unknown outcome (the "
                "provider may or may not have taken them); a re-run does not send to them again: check the "
                "provider's activity log."]

    def lines(self) -> list[str]:
        """Human summary, one fact a line, for the CLI."""
        head = "Dry run: nothing sent, nothing recorded." if self.dry_run else f"Issue {self.issue_id}" + (
            " planned now." if self.created else " already planned; finishing it.")
        out = [
            f"Digest {self.digest}: issue of {self.fire_at.isoformat()} covering "
            f"{self.period_start.isoformat()} (exclusive) to {self.period_end.isoformat()} (inclusive).",
            head,
            f"Articles in the period: {self.articles}; variants: {self.variants}; recipients: {self.recipients}; "
            f"nothing to send (empty for their topics): {self.skipped_empty}.",
        ]
        if not self.dry_run:
            out.append(f"Sent now: {self.sent_now}; sent before: {self.already_sent}; dropped since planning: "
                       f"{self.suppressed}; failed: {self.failed}; unknown: {self.unknown}; waiting: {self.waiting}.")
            out += reason_lines(self.reasons)
            if self.possible_duplicates:
                out.append(f"Possible duplicates (in flight during a crash, sent again): {self.possible_duplicates}.")
            if self.ok and not self.complete and self.elsewhere:
                out.append(f"This run is done; {self.elsewhere} are being sent by another sender right now "
                           "(`digest status` shows when the issue is complete).")
            elif self.ok and not self.complete:
                out.append(f"The issue stays open: its period ends at {self.period_end.isoformat()}, and only a run "
                           "after then completes it.")
            elif self.ok:
                out.append("The issue is complete.")
            elif self.complete:
                out.append("Nobody is waiting, but the issue is not complete: some outcomes are unknown.")
            else:
                out.append(f"The issue is not complete: {self.waiting} waiting; run again to finish it.")
        return out


def reason_lines(reasons: dict[str, list[tuple[str, int]]]) -> list[str]:
    """ "1 failed: 550 5.1.1 user unknown", one line per reason and state, most common first."""
    out: list[str] = []
    for state in ("failed", "unknown", "waiting", "in flight"):
        found = reasons.get(state, [])
        for reason, n in found[:MAX_REASON_LINES]:
            out.append(f"{n} {state}: {reason}")
        if len(found) > MAX_REASON_LINES:
            rest = sum(n for _reason, n in found[MAX_REASON_LINES:])
            out.append(f"{rest} {state} for {len(found) - MAX_REASON_LINES} other reasons")
    return out


def _readers_by_id(engine: Engine, ids: list[int]) -> list[PlanEntry]:
    out: list[PlanEntry] = []
    with engine.connect() as conn:
        for i in range(0, len(ids), 1000):
            rows = conn.execute(select(t_sub.c.id, t_sub.c.topics).where(t_sub.c.id.in_(ids[i:i + 1000])))
            out.extend(PlanEntry(sid, split_topics(topics)) for sid, topics in rows)
    out.sort()
    return out


def _complete_outcomes(outcomes: list[Outcome], ids: list[int], *, state: str = "unknown",
                       reason: str = "no outcome from the backend") -> list[Outcome]:
    """A backend that forgets a recipient leaves its outcome unknown, never silently sent or retried (a halted
    backend: the recipients it did not get to wait)."""
    seen = {o.subscriber_id for o in outcomes}
    return outcomes + [Outcome(subscriber_id=i, state=state, reason=reason) for i in ids if i not in seen]


@dataclass(frozen=True, kw_only=True)
class _Group:
    key: str
    ids: list[int]
    recipients: list[Recipient]
    payload: object | None  # the backend's prepared requests, when it can prepare them
    outcomes: list[Outcome]  # decided without sending (variant not in this run's plan)


class _BatchSender:
    """Turns a batch's rows into backend work: one group per variant, rendered once per variant. With a worker
    process, the links and requests of a batch are built there while this process goes on."""

    def __init__(self, backend: Backend, plan: IssuePlan, meta, renderer: DigestRenderer, builder: RecipientBuilder):
        self.backend, self.plan, self.meta = backend, plan, meta
        self.renderer, self.builder = renderer, builder
        self.rendered: dict[str, RenderedVariant] = {}
        self._prepare = getattr(backend, "prepare_batch", None)
        self.worker: BatchWorker | None = None
        self._lost: list[BatchWorker] = []  # workers that died, closed with the sender
        self.halt: DeliveryHalted | None = None  # set on the sending thread; the send then claims no more
        self._lost_lock = threading.Lock()

    def _groups(self, claim: ledger.Claim) -> tuple[list[tuple[str, list[tuple[int, str, int]]]], list[_Group]]:
        """The rows to send as (subscriber_id, email, token_version), by variant, and groups decided without sending."""
        todo, decided = [], []
        for key, members in claim.by_variant().items():
            if key not in self.plan.variants:  # planned by a concurrent run with other content: retry next run
                ids = [sid for sid, _email, _version in members]
                decided.append(_Group(key=key, ids=ids, recipients=[], payload=None, outcomes=[
                    Outcome(subscriber_id=i, state="failed", reason="variant not in this run's plan") for i in ids]))
                continue
            if key not in self.rendered:
                self.rendered[key] = self.renderer.render(self.plan, self.plan.variants[key])
            todo.append((key, members))
        return todo, decided

    def build(self, claim: ledger.Claim) -> list[_Group]:
        todo, groups = self._groups(claim)
        build = self.builder.build
        for key, members in todo:
            recipients = [build(sid, email, version) for sid, email, version in members]
            payload = (self._prepare(self.meta, self.rendered[key], recipients, claim.batch_id)
                       if self._prepare is not None else None)
            groups.append(_Group(key=key, ids=[r.subscriber_id for r in recipients], recipients=recipients,
                                 payload=payload, outcomes=[]))
        return groups

    def start(self, claim: ledger.Claim) -> Callable[[], list[_Group]]:
        """Begin preparing a claimed batch; the returned call gives the result (waiting for the worker, if any)."""
        worker = self.worker
        if worker is not None:
            todo, decided = self._groups(claim)
            try:
                future = worker.submit(self.meta, claim.batch_id,
                                       [(key, self.rendered[key], rows) for key, rows in todo])
            except WorkerLost:  # it died before this batch: build it here
                self._worker_lost(worker)
            else:
                def result() -> list[_Group]:
                    try:
                        payloads = future.result()
                    except WorkerLost:  # it died with this batch in hand: build it here
                        self._worker_lost(worker)
                        return self.build(claim)
                    return decided + [_Group(key=key, ids=[sid for sid, _email, _version in rows], recipients=[],
                                             payload=payload, outcomes=[])
                                      for (key, rows), payload in zip(todo, payloads, strict=True)]
                return result
        groups = self.build(claim)
        return lambda: groups

    def _worker_lost(self, worker: BatchWorker) -> None:
        """Carry on without a worker that died; the claiming and the main thread may both find out."""
        with self._lost_lock:
            if self.worker is not worker:
                return
            self.worker = None
            self._lost.append(worker)
        log.warning("the batch worker stopped; preparing batches in this process",
                    extra={"action": "digest_worker_lost"})

    def deliver(self, groups: list[_Group]) -> list[Outcome]:
        """Runs on the sending thread. Only a whole-batch failure of the backend is mapped here."""
        outcomes: list[Outcome] = []
        for group in groups:
            if group.outcomes:
                outcomes += group.outcomes
                continue
            if self.halt is not None:
                outcomes += _complete_outcomes([], group.ids, state="deferred", reason=str(self.halt))
                continue
            try:
                if group.payload is not None:
                    got = list(self.backend.send_prepared(group.payload))
                else:
                    got = list(self.backend.send_batch(self.meta, self.rendered[group.key], group.recipients))
            except DeliveryUnknown as exc:
                got = [Outcome(subscriber_id=i, state="unknown", reason=str(exc)) for i in group.ids]
            except DeliveryHalted as exc:
                self.halt = exc
                outcomes += _complete_outcomes(list(exc.outcomes), group.ids, state="deferred", reason=str(exc))
                continue
            except DeliveryError as exc:
                got = [Outcome(subscriber_id=i, state="failed", reason=str(exc)) for i in group.ids]
            outcomes += _complete_outcomes(got, group.ids)
        return outcomes

    def close(self) -> None:
        self.rendered.clear()
        for worker in [*self._lost, self.worker]:
            if worker is not None:
                worker.close()
        self.worker, self._lost = None, []


def _quietly(action: Callable[[], object], issue_id: int, claim: ledger.Claim | None) -> None:
    """Tidy up a batch while stopping, if we can. If not, recovery will (and flag it, if it was posted)."""
    try:
        action()
    except BaseException:  # noqa: BLE001
        log.warning("could not tidy up a batch while stopping; a later run recovers it",
                    extra={"action": "digest_batch_unrecorded", "issue_id": issue_id,
                           "batch_id": claim.batch_id if claim is not None else None})


def send_digest(name: str, *, at: datetime, settings: Settings, engine: Engine, library: Library,
                schedule: Schedule, backend: Backend, dry_run: bool = False, worker_id: str | None = None,
                clock: Callable[[], datetime] | None = None, stale_after: timedelta = STALE_AFTER,
                write_archive: bool = True, on_batch: Callable[..., None] | None = None,
                encode_in_worker: bool | None = None, stop: threading.Event | None = None) -> SendReport:
    """Send (or finish sending) the issue of digest ``name`` for the latest fire time at or before ``at``.

    ``encode_in_worker``: build links and requests in a worker process (None: when the backend can prepare
    requests ahead and at least WORKER_MIN_RECIPIENTS are pending).

    ``stop``: once set, the send ends after the batch that is out (recorded as sent), gives back what it had
    claimed, and reports the issue as not complete, for a later run to finish.

    ``at`` alone decides which issue and what is in it. ``clock`` only stamps the ledger (claims, sent times)
    and ages in-flight claims for crash recovery; it defaults to the system clock.
    """
    if at.tzinfo is None:
        raise InputError("--at needs a UTC offset, e.g. 2026-11-23T08:00:00-05:00")
    clock = clock or (lambda: datetime.now(UTC))
    digest = schedule.digest(name)
    job = schedule.job_for_digest(name)
    start, fire = issue_period(job, at=at)

    def plan_topics(conn):
        return plan_by_topics(library, digest, job, at=at, topic_counts=repository.eligible_topic_counts(
            conn, cadence=digest.cadence, at=at))

    if dry_run:
        with engine.connect() as conn:
            topic_plan = plan_topics(conn)
            plan = topic_plan.plan
            issue_id = issue_rows.find_issue(conn, name, fire)
            found = ledger.counts(conn, issue_id) if issue_id is not None else {}
        return SendReport(digest=name, fire_at=fire, period_start=start, period_end=fire, dry_run=True,
                          issue_id=issue_id, recipients=topic_plan.recipients, variants=len(plan.variants),
                          articles=len(plan.articles), skipped_empty=plan.skipped_empty,
                          already_sent=found.get("sent", 0), counts=found)

    worker_id = worker_id or recovery.new_worker_id()
    planned: dict[str, IssuePlan] = {}
    can_prepare = encode_in_worker is not False and hasattr(backend, "batch_preparer")
    early: list[BatchWorker] = []

    def plan_recipients(conn) -> issue_rows.ByTopics:
        topic_plan = plan_topics(conn)
        planned["plan"] = topic_plan.plan
        if can_prepare and not early and (encode_in_worker or topic_plan.recipients >= WORKER_MIN_RECIPIENTS):
            # Its process comes up (about a third of a second) while the database plans the issue.
            early.append(BatchWorker(settings, digest, fire, backend.batch_preparer()))
        return issue_rows.ByTopics(selection=repository.eligible_selection(cadence=digest.cadence, at=at),
                               variant_of=topic_plan.variant_of, per_variant=topic_plan.per_variant)

    try:
        issue_id, created, planned_rows = issue_rows.open_issue(engine, name, fire, (start, fire), plan_recipients,
                                                                at=clock(), batch_size=backend.max_batch)
        skipped_empty = 0
        recovered = 0
        if created:
            plan = planned["plan"]
            skipped_empty = plan.skipped_empty
        else:
            recovered = recovery.recover_stale(engine, issue_id, older_than=clock() - stale_after,
                                             is_gone=recovery.claimer_is_gone)
            recovery.requeue_failed(engine, issue_id, max_attempts=MAX_ATTEMPTS)
            # Re-plan for the fixed recipients only: content or their topics may have changed since.
            todo = recovery.open_rows(engine, issue_id)
            plan = plan_issue(library, digest, job, at=at, subscribers=_readers_by_id(engine, sorted(todo)))
            _, skipped_empty = recovery.reconcile(engine, issue_id, plan.assignments)
        # From here on the ledger's variant of each row is the plan's (reconcile has just made it so): drop a
        # re-plan's own map of subscribers instead of carrying it through the send.
        plan = replace(plan, assignments={})
        planned.clear()
        # A count of a just-planned issue would read every row to learn what the insert just said.
        before = ({**dict.fromkeys(ledger.STATES, 0), "pending": planned_rows, "possible_duplicate": 0} if created
                  else ledger.counts(engine, issue_id))
        log.info("digest issue opened", extra={
            "action": "digest_issue_opened", "digest": name, "issue_id": issue_id, "issue_created": created,
            "recipients": sum(before[s] for s in ledger.STATES)})

        meta = issue_meta(digest, fire, settings, issue_id)
        sender = _BatchSender(backend, plan, meta, DigestRenderer(settings, library, digest),
                              RecipientBuilder(settings, digest, fire))
        sent_now = 0
        if on_batch is not None:
            on_batch(total=before["pending"])
        if encode_in_worker is None:
            encode_in_worker = before["pending"] >= WORKER_MIN_RECIPIENTS
        if encode_in_worker and can_prepare:
            sender.worker = early.pop() if early else BatchWorker(settings, digest, fire, backend.batch_preparer())
    finally:
        for unused in early:
            unused.close()

    def recorded(done: dict[str, int], claim: ledger.Claim, variants: int) -> None:
        nonlocal sent_now
        sent_now += done.get("sent", 0)
        if on_batch is not None:
            on_batch(suppressed=len(claim.suppressed), **done)
        log.info("digest batch sent", extra={"action": "digest_batch_sent", "digest": name, "issue_id": issue_id,
                                              "batch_id": claim.batch_id, "variants": variants, **done})

    # Pipelined: while one batch is with the backend (on a thread), the next ones are claimed and prepared (their
    # links built and requests encoded, in a worker process for a large issue). Recording a batch and marking the
    # next as posted is one transaction (ledger.post), so at most one batch is ever posted and unrecorded; claims
    # not yet posted are given back if we stop.
    limit = max(1, backend.max_batch)
    ahead = 2 if sender.worker is not None else 1  # claims prepared ahead of the one on the wire
    cursor = (-1, -1)
    upcoming: deque[Future] = deque()  # of (claim, its prepared groups when ready) or None: nothing left
    exhausted = False

    def claim_one() -> tuple[ledger.Claim, Callable[[], list[_Group]]] | None:
        # On the claiming thread, one claim after another: a claim's database round trips overlap the
        # recording of the last batch and the sending of the one on the wire.
        nonlocal cursor
        claim = ledger.claim_next(engine, issue_id, cursor, limit=limit, worker_id=worker_id, at=clock(),
                                  mailable_at=at)
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
            ledger.release(engine, issue_id, got[0])

    inflight: tuple[ledger.Claim, int, Future] | None = None  # claim, its variant groups, its outcomes
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
            settled = settling.submit(ledger.settle, engine, issue_id, list(unsettled))
            unsettled.clear()

    with (ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-send") as sending,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-claim") as claiming,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-settle") as settling):
        try:
            claim_ahead()
            while upcoming or inflight is not None:
                finished = None
                if inflight is not None:
                    finished = ledger.Finished(batch_no=inflight[0].batch_no, batch_id=inflight[0].batch_id,
                                               outcomes=inflight[2].result())
                if ((stop is not None and stop.is_set()) or sender.halt is not None) and not exhausted:
                    exhausted = True  # claim no more; what was claimed ahead goes back to pending, unflagged
                    while upcoming:
                        give_back(upcoming.popleft())
                nxt = next_claim()
                groups = nxt[1]() if nxt is not None else None
                done, deferred = ledger.post(engine, issue_id, finished=finished, at=clock(),
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
                _quietly(lambda: ledger.finish(engine, issue_id, ledger.Finished(
                    batch_no=claim.batch_no, batch_id=claim.batch_id, outcomes=future.result()), at=clock()),
                    issue_id, claim)
            raise
        finally:
            claiming.shutdown(wait=True)  # before the worker goes: a claim in progress may be handing it work
            sender.close()
            if settled is not None:
                _quietly(settled.result, issue_id, None)
            if unsettled:
                _quietly(lambda: ledger.settle(engine, issue_id, unsettled), issue_id, None)
    complete, after = ledger.close_issue(engine, issue_id, at=clock())
    why = ledger.reasons(engine, issue_id, after)
    halt = sender.halt
    if halt is not None:
        log.warning("digest send stopped: %s", halt, extra={"action": "digest_send_halted", "digest": name,
                                                            "issue_id": issue_id})
    if write_archive:
        archive.write_issue(plan, sender.renderer, settings, schedule)
    return SendReport(
        digest=name, fire_at=fire, period_start=start, period_end=fire, dry_run=False, issue_id=issue_id,
        created=created, recipients=sum(after[s] for s in ledger.STATES), variants=len(plan.variants),
        articles=len(plan.articles), sent_now=sent_now, already_sent=before["sent"], skipped_empty=skipped_empty,
        suppressed=after["suppressed"], failed=after["failed"], unknown=after["unknown"],
        possible_duplicates=after["possible_duplicate"], recovered=recovered, complete=complete, counts=after,
        waiting=after["pending"], elsewhere=after["in_flight"], reasons=why,
        halted=str(halt) if halt is not None else None,
        setup_error=isinstance(halt, DeliverySetupError),
    )


def preview_digest(name: str, *, at: datetime, settings: Settings, library: Library, schedule: Schedule,
                   topics: tuple[str, ...] | None = None) -> str:
    """The HTML a subscriber with ``topics`` would get (no topics given: everything in the issue), with example
    links in place of personal ones. Raises InputError when that issue would be empty."""
    digest = schedule.digest(name)
    job = schedule.job_for_digest(name)
    if topics:
        unknown = [t for t in topics if t not in library.topic_ids]
        if unknown:
            raise InputError(f"--topics: unknown topic ids {', '.join(unknown)}; known: {', '.join(library.topic_ids)}")
        plan = plan_issue(library, digest, job, at=at, subscribers=[PlanEntry(0, tuple(topics))])
        variant = plan.variants.get(plan.assignments.get(0, ""))
    else:
        plan = plan_issue(library, digest, job, at=at, subscribers=[])
        variant = generic_variant(plan)
    if variant is None:
        raise InputError(f"the {name} issue of {plan.fire_at.isoformat()} has no articles"
                         + (f" for topics {';'.join(topics)}" if topics else "") + "; nobody would get an email")
    html = DigestRenderer(settings, library, digest).render(plan, variant).html
    for placeholder, value in example_substitutions(settings).items():
        html = html.replace(placeholder, value)
    return html
