"""Send one issue of a digest: open or resume it (the plan), dispatch its batches (the act), report.

Idempotent and resumable: the issue and its recipients are fixed on the first run; a later run (after a crash,
or a second scheduler) only finishes what is left. Several workers can run it at once on PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from pipeline.content.model import Library
from pipeline.delivery import issue_ledger
from pipeline.delivery.backend import Backend
from pipeline.digests import archive
from pipeline.digests.batches import BatchSender
from pipeline.digests.dispatch import dispatch
from pipeline.digests.message import RecipientBuilder, issue_meta
from pipeline.digests.opening import WORKER_MIN_RECIPIENTS, open_or_resume, window
from pipeline.digests.opening import dry_run as dry_run_report
from pipeline.digests.preview import preview_digest
from pipeline.digests.render import DigestRenderer
from pipeline.digests.report import SendReport, reason_lines
from pipeline.errors import DeliverySetupError, InputError
from pipeline.schedules import Schedule
from pipeline.settings import Settings

__all__ = ["WORKER_MIN_RECIPIENTS", "SendReport", "preview_digest", "reason_lines", "send_digest"]

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(minutes=30)


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
    w = window(name, at=at, schedule=schedule)
    if dry_run:
        return dry_run_report(w, engine=engine, library=library)

    sp = open_or_resume(w, settings=settings, engine=engine, library=library, backend=backend, clock=clock,
                        stale_after=stale_after, encode_in_worker=encode_in_worker)
    issue, fire = sp.issue, w.fire
    try:
        meta = issue_meta(w.digest, fire, settings, issue.issue_id)
        sender = BatchSender(backend, sp.plan, meta, DigestRenderer(settings, library, w.digest),
                             RecipientBuilder(settings, w.digest, fire))
    except BaseException:
        if sp.worker is not None:
            sp.worker.close()
        raise
    sender.worker = sp.worker
    if on_batch is not None:
        on_batch(total=sp.before["pending"])
    sent_now = dispatch(issue, sender, name=name, limit=backend.max_batch,
                        worker_id=worker_id or issue_ledger.new_worker_id(), clock=clock, mailable_at=at,
                        stop=stop, on_batch=on_batch,
                        due=(at - w.job.misfire_grace, at) if w.local else None)
    complete, after = issue.close(at=clock())
    why = issue.reasons(after)
    to_come, skipped = [], []
    if w.local and after["pending"]:
        for due, n in issue.pending_waves():
            (to_come if due > at else skipped if due < at - w.job.misfire_grace else []).append((due, n))
        for due, n in skipped:
            log.warning("digest wave skipped: its grace had passed", extra={
                "action": "digest_wave_skipped", "digest": name, "issue_id": issue.issue_id, "recipients": n,
                "due_at": due.isoformat(), "command": f"pipeline digest send {name} --at {due.isoformat()}"})
    halt = sender.halt
    if halt is not None:
        log.warning("digest send stopped: %s", halt, extra={"action": "digest_send_halted", "digest": name,
                                                            "issue_id": issue.issue_id})
    if write_archive:
        archive.write_issue(sp.plan, sender.renderer, settings, schedule)
    before = sp.before
    return SendReport(
        digest=name, fire_at=fire, period_start=w.start, period_end=w.period[2], dry_run=False, issue_id=issue.issue_id,
        created=sp.created, recipients=sum(after[s] for s in issue_ledger.STATES), variants=len(sp.plan.variants),
        articles=len(sp.plan.articles), sent_now=sent_now, already_sent=before["sent"],
        skipped_empty=sp.skipped_empty, suppressed=after["suppressed"], failed=after["failed"],
        unknown=after["unknown"], possible_duplicates=after["possible_duplicate"], recovered=sp.recovered,
        complete=complete, counts=after, waiting=after["pending"], elsewhere=after["in_flight"], reasons=why,
        halted=str(halt) if halt is not None else None,
        setup_error=isinstance(halt, DeliverySetupError), waves_to_come=tuple(to_come), waves_skipped=tuple(skipped),
    )


