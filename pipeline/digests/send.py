"""Send one issue of a digest: plan, fix the recipients in the ledger, render each variant once, deliver in batches.

Idempotent and resumable: the issue and its recipients are fixed on the first run; a later run (after a crash,
or a second scheduler) only finishes what is left. Several workers can run it at once on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from pipeline.content.model import Library
from pipeline.delivery import ledger
from pipeline.delivery.backend import Backend, Outcome, RenderedVariant
from pipeline.digests import archive
from pipeline.digests.message import RecipientBuilder, example_substitutions, issue_meta
from pipeline.digests.plan import IssuePlan, PlanEntry, generic_variant, issue_period, plan_issue
from pipeline.digests.render import DigestRenderer
from pipeline.errors import DeliveryError, DeliveryUnknown, InputError
from pipeline.scheduling.schedule import Schedule
from pipeline.settings import Settings
from pipeline.store.tables import subscribers as t_sub
from pipeline.subscribers import repository
from pipeline.subscribers.model import split_topics

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(minutes=30)
MAX_ATTEMPTS = 3


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
                       f"{self.suppressed}; failed: {self.failed}; unknown: {self.unknown}.")
            if self.possible_duplicates:
                out.append(f"Possible duplicates (in flight during a crash, sent again): {self.possible_duplicates}.")
            out.append("The issue is complete." if self.complete else "The issue is not complete yet; run again to finish it.")
        return out


def _readers_by_id(engine: Engine, ids: list[int]) -> list[PlanEntry]:
    out: list[PlanEntry] = []
    with engine.connect() as conn:
        for i in range(0, len(ids), 1000):
            rows = conn.execute(select(t_sub.c.id, t_sub.c.topics).where(t_sub.c.id.in_(ids[i:i + 1000])))
            out.extend(PlanEntry(sid, split_topics(topics)) for sid, topics in rows)
    out.sort()
    return out


def _complete_outcomes(outcomes: list[Outcome], ids: list[int]) -> list[Outcome]:
    """A backend that forgets a recipient leaves its outcome unknown, never silently sent or retried."""
    seen = {o.subscriber_id for o in outcomes}
    return outcomes + [Outcome(subscriber_id=i, state="unknown", reason="no outcome from the backend")
                       for i in ids if i not in seen]


def send_digest(name: str, *, at: datetime, settings: Settings, engine: Engine, library: Library,
                schedule: Schedule, backend: Backend, dry_run: bool = False, worker_id: str | None = None,
                clock: Callable[[], datetime] | None = None, stale_after: timedelta = STALE_AFTER,
                write_archive: bool = True, on_batch: Callable[..., None] | None = None) -> SendReport:
    """Send (or finish sending) the issue of digest ``name`` for the latest fire time at or before ``at``.

    ``at`` alone decides which issue and what is in it. ``clock`` only stamps the ledger (claims, sent times)
    and ages in-flight claims for crash recovery; it defaults to the system clock.
    """
    if at.tzinfo is None:
        raise InputError("--at needs a UTC offset, e.g. 2026-11-23T08:00:00-05:00")
    clock = clock or (lambda: datetime.now(UTC))
    digest = schedule.digest(name)
    job = schedule.job_for_digest(name)
    start, fire = issue_period(job, at=at)

    if dry_run:
        with engine.connect() as conn:
            readers = (PlanEntry(sid, topics) for sid, topics in
                       repository.eligible_topics(conn, cadence=digest.cadence, at=at))
            plan = plan_issue(library, digest, job, at=at, subscribers=readers)
            issue_id = ledger.find_issue(conn, name, fire)
            found = ledger.counts(conn, issue_id) if issue_id is not None else {}
        return SendReport(digest=name, fire_at=fire, period_start=start, period_end=fire, dry_run=True,
                          issue_id=issue_id, recipients=len(plan.assignments), variants=len(plan.variants),
                          articles=len(plan.articles), skipped_empty=plan.skipped_empty,
                          already_sent=found.get("sent", 0), counts=found)

    worker_id = worker_id or ledger.new_worker_id()
    planned: dict[str, IssuePlan] = {}

    def plan_recipients(conn) -> dict[int, str]:
        readers = (PlanEntry(sid, topics) for sid, topics in
                   repository.eligible_topics(conn, cadence=digest.cadence, at=at))
        planned["plan"] = plan_issue(library, digest, job, at=at, subscribers=readers)
        return planned["plan"].assignments

    issue_id, created = ledger.open_issue(engine, name, fire, (start, fire), plan_recipients, at=clock())
    skipped_empty = 0
    recovered = 0
    if created:
        plan = planned["plan"]
        skipped_empty = plan.skipped_empty
    else:
        recovered = ledger.recover_stale(engine, issue_id, older_than=clock() - stale_after,
                                         is_gone=ledger.claimer_is_gone)
        ledger.requeue_failed(engine, issue_id, max_attempts=MAX_ATTEMPTS)
        # Re-plan for the fixed recipients only: content or their topics may have changed since.
        todo = ledger.open_rows(engine, issue_id)
        plan = plan_issue(library, digest, job, at=at, subscribers=_readers_by_id(engine, sorted(todo)))
        _, skipped_empty = ledger.reconcile(engine, issue_id, plan.assignments)
    before = ledger.counts(engine, issue_id)
    log.info("digest issue opened", extra={"action": "digest_issue_opened", "digest": name, "issue_id": issue_id,
                                            "issue_created": created, "recipients": sum(before[s] for s in ledger.STATES)})

    meta = issue_meta(digest, fire, settings, issue_id)
    renderer = DigestRenderer(settings, library, digest)
    builder = RecipientBuilder(settings, digest, fire)
    rendered: dict[str, RenderedVariant] = {}
    sent_now = 0
    if on_batch is not None:
        on_batch(total=before["pending"])
    while claim := ledger.claim_batch(engine, issue_id, limit=backend.max_batch, worker_id=worker_id, at=clock(),
                                      mailable_at=at):
        by_variant: dict[str, list[ledger.ClaimedRow]] = {}
        for row in claim.rows:
            by_variant.setdefault(plan.assignments.get(row.subscriber_id, row.variant), []).append(row)
        outcomes: list[Outcome] = []
        for key, rows in by_variant.items():
            ids = [r.subscriber_id for r in rows]
            if key not in plan.variants:  # planned by a concurrent run with other content: retry next run
                outcomes += [Outcome(subscriber_id=i, state="failed", reason="variant not in this run's plan") for i in ids]
                continue
            if key not in rendered:
                rendered[key] = renderer.render(plan, plan.variants[key])
            recipients = [builder.build(r.subscriber_id, r.email, r.token_version) for r in rows]
            try:
                got = list(backend.send_batch(meta, rendered[key], recipients))
            except DeliveryUnknown as exc:
                got = [Outcome(subscriber_id=i, state="unknown", reason=str(exc)) for i in ids]
            except DeliveryError as exc:
                got = [Outcome(subscriber_id=i, state="failed", reason=str(exc)) for i in ids]
            outcomes += _complete_outcomes(got, ids)
        if outcomes:
            done = ledger.finish(engine, issue_id, claim.batch_id, outcomes, at=clock(), whole_batch=True)
            sent_now += done.get("sent", 0)
            if on_batch is not None:
                on_batch(suppressed=len(claim.suppressed), **done)
            log.info("digest batch sent", extra={"action": "digest_batch_sent", "digest": name, "issue_id": issue_id,
                                                  "batch_id": claim.batch_id, "variants": len(by_variant), **done})
    complete = ledger.complete_if_done(engine, issue_id, at=clock())
    after = ledger.counts(engine, issue_id)
    if write_archive:
        archive.write_issue(plan, renderer, settings, schedule)
    return SendReport(
        digest=name, fire_at=fire, period_start=start, period_end=fire, dry_run=False, issue_id=issue_id,
        created=created, recipients=sum(after[s] for s in ledger.STATES), variants=len(plan.variants),
        articles=len(plan.articles), sent_now=sent_now, already_sent=before["sent"], skipped_empty=skipped_empty,
        suppressed=after["suppressed"], failed=after["failed"], unknown=after["unknown"],
        possible_duplicates=after["possible_duplicate"], recovered=recovered, complete=complete, counts=after,
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
