"""Opening or resuming an issue: everything a send decides before it sends anything, returned as a value.

A dry run is the same plan read without writing: who would get which variant of which articles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from pipeline.content.model import Library
from pipeline.delivery import issue_ledger
from pipeline.delivery.backend import Backend, PreparesBatches
from pipeline.delivery.issue_ledger import IssueLedger
from pipeline.digests import waves
from pipeline.digests.batch_worker import BatchWorker
from pipeline.digests.plan import IssuePlan, PlanEntry, issue_period, plan_by_topics, plan_issue
from pipeline.digests.report import SendReport
from pipeline.schedules import Digest, Job, Schedule
from pipeline.settings import Settings
from pipeline.subscribers import repository

log = logging.getLogger("pipeline.digests.send")
WORKER_MIN_RECIPIENTS = 20_000
MAX_ATTEMPTS = 3


@dataclass(frozen=True, kw_only=True)
class Window:
    """Which issue ``at`` asks for, and the period it covers."""

    name: str
    digest: Digest
    job: Job
    start: datetime
    fire: datetime
    at: datetime
    end: datetime | None = None  # the period's end when it is not ``fire`` (deliver_at: local: the first wave)

    @property
    def local(self) -> bool:
        return self.digest.deliver_at == "local" and self.digest.local_time is not None

    @property
    def period(self) -> tuple[datetime, datetime, datetime]:
        return self.start, self.fire, self.end or self.fire

    def due_in_zone(self, zone: str | None) -> datetime:
        tz = self.job.tz
        return waves.due_at(waves.local_date(self.fire, tz), self.digest.local_time, waves.zone_or(zone, tz))


def window(name: str, *, at: datetime, schedule: Schedule) -> Window:
    job = schedule.job_for_digest(name)
    digest = schedule.digest(name)
    if digest.deliver_at == "local" and digest.local_time is not None:
        start, fire, end = waves.local_issue(job.previous_fire, job.fire_before, when=at, at=digest.local_time,
                                             schedule_zone=job.tz)
        return Window(name=name, digest=digest, job=job, start=start, fire=fire, at=at, end=end)
    start, fire = issue_period(job, at=at)
    return Window(name=name, digest=digest, job=job, start=start, fire=fire, at=at)


@dataclass(frozen=True, kw_only=True)
class SendPlan:
    """An issue opened (or found open) in the ledger, ready to dispatch."""

    window: Window
    issue: IssueLedger
    created: bool  # this run planned the issue
    plan: IssuePlan  # the content, and the variants by key (its map of subscribers dropped)
    before: dict[str, int]  # ledger rows by state before this run sent anything
    skipped_empty: int
    recovered: int
    worker: BatchWorker | None  # a process to prepare batches in, owned by the dispatcher from here on


def _plan_topics(conn, w: Window, library: Library):
    return plan_by_topics(library, w.digest, w.job, at=w.at, period=w.period, topic_counts=repository.eligible_topic_counts(
        conn, cadence=w.digest.cadence, at=w.at))


def dry_run(w: Window, *, engine: Engine, library: Library) -> SendReport:
    """The plan without the act: nothing recorded, nothing sent."""
    with engine.connect() as conn:
        topic_plan = _plan_topics(conn, w, library)
        plan = topic_plan.plan
        issue_id = issue_ledger.find(conn, w.name, w.fire)
        found = issue_ledger.counts_in(conn, issue_id) if issue_id is not None else {}
    return SendReport(digest=w.name, fire_at=w.fire, period_start=w.start, period_end=w.period[2], dry_run=True,
                      issue_id=issue_id, recipients=topic_plan.recipients, variants=len(plan.variants),
                      articles=len(plan.articles), skipped_empty=plan.skipped_empty,
                      already_sent=found.get("sent", 0), counts=found)


def open_or_resume(w: Window, *, settings: Settings, engine: Engine, library: Library, backend: Backend,
                   clock: Callable[[], datetime], stale_after: timedelta,
                   encode_in_worker: bool | None) -> SendPlan:
    """Fix the issue's recipients in the ledger on its first run; on a later one, recover what a crash left and
    re-plan the content for the recipients still to send."""
    planned: dict[str, IssuePlan] = {}
    can_prepare = encode_in_worker is not False and isinstance(backend, PreparesBatches)
    early: list[BatchWorker] = []

    def plan_recipients(conn) -> issue_ledger.ByTopics:
        topic_plan = _plan_topics(conn, w, library)
        planned["plan"] = topic_plan.plan
        if can_prepare and not early and (encode_in_worker or topic_plan.recipients >= WORKER_MIN_RECIPIENTS):
            # Its process comes up (about a third of a second) while the database plans the issue.
            early.append(BatchWorker(settings, w.digest, w.fire, backend.batch_preparer()))
        return issue_ledger.ByTopics(selection=repository.eligible_selection(cadence=w.digest.cadence, at=w.at),
                                     variant_of=topic_plan.variant_of, per_variant=topic_plan.per_variant,
                                     due_in_zone=w.due_in_zone if w.local else None)

    try:
        issue, created, planned_rows = IssueLedger.open(engine, w.name, w.fire, (w.start, w.period[2]), plan_recipients,
                                                        at=clock(), batch_size=backend.max_batch)
        skipped_empty = 0
        recovered = 0
        if created:
            plan = planned["plan"]
            skipped_empty = plan.skipped_empty
        else:
            recovered = issue.recover(older_than=clock() - stale_after, max_attempts=MAX_ATTEMPTS)
            # Re-plan for the fixed recipients only: content or their topics may have changed since.
            todo = issue.open_rows()
            with engine.connect() as conn:
                readers = [PlanEntry(sid, topics) for sid, topics in repository.topics_by_id(conn, sorted(todo))]
            plan = plan_issue(library, w.digest, w.job, at=w.at, subscribers=readers, period=w.period)
            _, skipped_empty = issue.reconcile(plan.assignments)
        # From here on the ledger's variant of each row is the plan's (reconcile has just made it so): drop a
        # re-plan's own map of subscribers instead of carrying it through the send.
        plan = replace(plan, assignments={})
        planned.clear()
        # A count of a just-planned issue would read every row to learn what the insert just said.
        before = ({**dict.fromkeys(issue_ledger.STATES, 0), "pending": planned_rows, "possible_duplicate": 0}
                  if created else issue.counts())
        log.info("digest issue opened", extra={
            "action": "digest_issue_opened", "digest": w.name, "issue_id": issue.issue_id, "issue_created": created,
            "recipients": sum(before[s] for s in issue_ledger.STATES)})
        if encode_in_worker is None:
            encode_in_worker = before["pending"] >= WORKER_MIN_RECIPIENTS
        worker = None
        if encode_in_worker and can_prepare:
            worker = early.pop() if early else BatchWorker(settings, w.digest, w.fire, backend.batch_preparer())
    finally:
        for unused in early:
            unused.close()
    return SendPlan(window=w, issue=issue, created=created, plan=plan, before=before, skipped_empty=skipped_empty,
                    recovered=recovered, worker=worker)
