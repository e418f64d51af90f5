"""The operations that the CLI and the scheduler share, so a scheduled job runs exactly what a command runs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from pipeline import metrics
from pipeline.atomic_files import write_atomic
from pipeline.content.model import Library
from pipeline.context import Context
from pipeline.editorial import live, record
from pipeline.feeds import BuildReport, build_site

log = logging.getLogger("pipeline.jobs")


@dataclass(frozen=True)
class Lines:
    lines: list[str]
    problems: list[str] = field(default_factory=list)  # why it did not finish, for stderr: exit 1 when any
    waiting: int = 0  # recipients of a digest issue left for a later run
    fire_at: datetime | None = None  # the digest issue's fire time
    not_yet_due: int = 0  # deliver_at: local: waiting for a wave still to come (its scheduled run sends them)
    skipped: int = 0  # deliver_at: local: waiting in a wave past its grace (only a command sends them)

    @property
    def due_waiting(self) -> int:
        """Waiting recipients a retry of the issue could send now."""
        return max(0, self.waiting - self.not_yet_due - self.skipped)

    def summary(self) -> str:
        return "\n".join(self.lines)


def _sync(ctx: Context, conn, *, at: datetime, author: str | None = None, dry_run: bool = False) -> record.SyncReport:
    content_dir = ctx.settings.content_dir
    present = {p.stem for p in content_dir.glob("*.md") if p.name.lower() != "readme.md"}
    return record.sync_files(conn, list(ctx.library().articles), present=present, at=at,
                             mode=ctx.settings.review_mode, author=author, dry_run=dry_run)


def record_content(ctx: Context, *, at: datetime, author: str | None = None,
                   dry_run: bool = False) -> record.SyncReport:
    """Record content/ as it is now: new texts become revisions, front-matter reviews attestations (in attested
    mode), and each article's time or retraction its publication. Never writes content/."""
    for attempt in (1, 2):
        try:
            with ctx.engine.begin() as conn:
                return _sync(ctx, conn, at=at, author=author, dry_run=dry_run)
        except IntegrityError:
            if attempt == 2:  # another process recorded the same revision meanwhile; the second pass sees it
                raise
    raise AssertionError("unreachable")


def publishing_library(ctx: Context, *, at: datetime, store: bool = True) -> Library:
    """What readers may see at ``at``: content/ is recorded first, then the live view is read. ``store=False``
    (a dry run, a preview) reads the same view inside a transaction that is rolled back: nothing is recorded."""
    if store:
        record_content(ctx, at=at)
        with ctx.engine.connect() as conn:
            return live.publishing_library(conn, ctx.library(), at=at, mode=ctx.settings.review_mode)
    with ctx.engine.connect() as conn:
        trans = conn.begin()
        try:
            _sync(ctx, conn, at=at)
            return live.publishing_library(conn, ctx.library(), at=at, mode=ctx.settings.review_mode)
        finally:
            trans.rollback()


def build_feeds(ctx: Context, *, at: datetime) -> BuildReport:
    from pipeline.store.site_keys import feed_id_namespace

    s = ctx.settings
    started, ok = time.monotonic(), False
    try:
        library = publishing_library(ctx, at=at)
        report = build_site(library, at=at, public_dir=s.public_dir, site_url=s.site_url,
                            templates_dir=s.templates_dir, id_namespace=feed_id_namespace(ctx.engine, at=at))
        with ctx.engine.begin() as conn:
            live.record_went_live(conn, library.live(at), at=at)
        ok = True
        return report
    finally:
        metrics.feed_build(finished_at=time.time(), seconds=time.monotonic() - started, ok=ok)


def future_send_problem(name: str, *, at: datetime, now: datetime, force: bool) -> str | None:
    """Why ``digest send NAME --at`` must not run now, or None. Sending a future issue early would mail it before
    articles queued for later in its period are due, and those would then never be mailed."""
    if at <= now or force:
        return None
    return (f"--at {at.isoformat()} is later than now ({now.isoformat(timespec='seconds')}): sending digest {name} "
            "now would send that issue early, and articles queued for later in its period would never be mailed. "
            "Leave it to the scheduler, or add --force to send it anyway for a test (the issue then stays open "
            "until its period has ended).")


def send_digest(ctx: Context, name: str, *, at: datetime, dry_run: bool = False, progress: bool = True,
                stop: threading.Event | None = None) -> Lines:
    """Send (or finish) the issue of ``name`` for ``at`` through PIPELINE_DELIVERY, with progress on stderr.
    ``stop``: end after the batch that is out, leaving the issue for a later run to finish."""
    from pipeline.delivery.factory import make_backend
    from pipeline.delivery.progress import Progress
    from pipeline.digests.send import send_digest as send

    backend = make_backend(ctx.settings)
    bar: dict[str, Progress] = {}

    def on_batch(total: int | None = None, **counts: int) -> None:
        metrics.messages(ctx.settings.delivery, "digest", counts)
        if not progress:
            return
        if total is not None:
            bar["p"] = Progress(total, label=f"digest {name}")
        elif "p" in bar:
            bar["p"].advance(**{k: v for k, v in counts.items() if v and k != "deferred"})  # those wait: not done

    try:
        library = publishing_library(ctx, at=at, store=not dry_run)
        report = send(name, at=at, settings=ctx.settings, engine=ctx.engine, library=library,
                      schedule=ctx.schedule, backend=backend, dry_run=dry_run,
                      on_batch=None if dry_run else on_batch, stop=stop)
    finally:
        backend.close()
        if "p" in bar:
            bar["p"].close()
    return Lines(report.lines(), problems=report.problems(), waiting=report.waiting, fire_at=report.fire_at,
                 not_yet_due=report.not_yet_due, skipped=sum(n for _due, n in report.waves_skipped))


def digest_status(ctx: Context, name: str, *, at: datetime) -> Lines:
    """Counts per state of the issue of ``name`` for ``at``, and the possible duplicates."""
    from pipeline.delivery import issue_rows, ledger
    from pipeline.digests.opening import window
    from pipeline.digests.send import reason_lines

    w = window(name, at=at, schedule=ctx.schedule)
    fire = w.fire
    with ctx.engine.connect() as conn:
        issue_id = issue_rows.find_issue(conn, name, fire)
        if issue_id is None:
            return Lines([f"Digest {name}: the issue of {fire.isoformat()} has not been sent yet."])
        counts = ledger.counts(conn, issue_id)
        why = ledger.reasons(conn, issue_id, counts)
        waves = ledger.wave_counts(conn, issue_id) if w.local else []
    total = sum(counts[s] for s in ledger.STATES)
    lines = [f"Digest {name}: issue {issue_id} of {fire.isoformat()} ({total} recipients)"]
    lines += [f"  {state:<11} {counts[state]}" for state in ledger.STATES]
    lines.append(f"  possible duplicates (in flight during a crash): {counts['possible_duplicate']}")
    lines += reason_lines(why)
    grace = w.job.misfire_grace
    past = 0
    for due, by_state in waves:  # deliver_at: local
        left = by_state.get("pending", 0) + by_state.get("in_flight", 0)
        done = sum(by_state.values()) - left
        if not left:
            lines.append(f"  wave {due.isoformat()}: sent ({done} done)")
        elif due > at:
            lines.append(f"  wave {due.isoformat()}: to come ({left} recipient{'s' if left != 1 else ''}; "
                         f"{done} done)")
        elif due < at - grace:
            past += left
            lines.append(f"  wave {due.isoformat()}: {left} not sent and past its grace; send it with "
                         f"`pipeline digest send {name} --at {due.isoformat()}`")
        else:
            lines.append(f"  wave {due.isoformat()}: due now ({left} waiting; {done} done)")
    open_rows = counts["pending"] + counts["in_flight"]
    if open_rows and waves:
        lines.append(f"not complete: {open_rows} waiting for their waves (above); " + (
            f"{past} only by the command above, their wave's grace has passed" if past else
            "the scheduler sends each wave as it comes"))
    elif open_rows:
        lines.append(f"not complete: {open_rows} waiting; run `pipeline digest send {name} --at {fire.isoformat()}`, "
                     "or let the scheduler finish it")
    elif counts["unknown"]:
        lines.append(f"not complete: {counts['unknown']} with an unknown outcome; check the provider's activity log")
    else:
        lines.append("complete")
    return Lines(lines, waiting=open_rows, fire_at=fire)


def preview_digest(ctx: Context, name: str, *, at: datetime, topics: tuple[str, ...], out: Path) -> str:
    from pipeline.digests.send import preview_digest as preview

    html = preview(name, at=at, settings=ctx.settings, library=publishing_library(ctx, at=at, store=False),
                   schedule=ctx.schedule, topics=topics or None)
    write_atomic(out, html, skip_unchanged=False)
    return f"wrote {out}"


def fetch_sources(ctx: Context, *, at: datetime, only: str | None = None, force: bool = False):
    """Fetch the watched sources of content/sources.yaml into the inbox (``only``: one source id).
    A broken entry in sources.yaml is reported and skipped; the other sources are still fetched."""
    from pipeline.curation.fetch import user_agent
    from pipeline.curation.netguard import AddressPolicy
    from pipeline.curation.run import fetch_sources as run
    from pipeline.curation.sources import load_sources
    from pipeline.errors import NotFound

    s = ctx.settings
    sources, problems = load_sources(s.content_dir, topic_ids=frozenset(ctx.library().topic_ids))
    for p in problems:
        log.warning("%s (source skipped)", p, extra={"action": "source_skipped"})
    if only is not None:
        sources = tuple(src for src in sources if src.id == only)
        if not sources:
            raise NotFound(f"sources: no valid source {only!r} in {s.content_dir / 'sources.yaml'}; "
                           "see 'pipeline sources list'")
    return run(ctx.engine, sources, at=at, policy=AddressPolicy(allow_private=s.fetch_allow_private),
               agent=user_agent(s.site_url), force=force)
