"""The operations that the CLI and the scheduler share, so a scheduled job runs exactly what a command runs."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.context import Context
from pipeline.feeds import BuildReport, build_site
from pipeline.fsio import write_atomic

log = logging.getLogger("pipeline.jobs")


@dataclass(frozen=True)
class Lines:
    lines: list[str]
    problems: list[str] = field(default_factory=list)  # why it did not finish, for stderr: exit 1 when any
    waiting: int = 0  # recipients of a digest issue left for a later run
    fire_at: datetime | None = None  # the digest issue's fire time

    def summary(self) -> str:
        return "\n".join(self.lines)


def build_feeds(ctx: Context, *, at: datetime) -> BuildReport:
    from pipeline.store.site_keys import feed_id_namespace

    s = ctx.settings
    return build_site(ctx.library(), at=at, public_dir=s.public_dir, site_url=s.site_url, templates_dir=s.templates_dir,
                      id_namespace=feed_id_namespace(ctx.engine, at=at))


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
        if total is not None:
            bar["p"] = Progress(total, label=f"digest {name}")
        elif "p" in bar:
            bar["p"].advance(**{k: v for k, v in counts.items() if v and k != "deferred"})  # those wait: not done

    try:
        report = send(name, at=at, settings=ctx.settings, engine=ctx.engine, library=ctx.library(),
                      schedule=ctx.schedule, backend=backend, dry_run=dry_run,
                      on_batch=on_batch if progress and not dry_run else None, stop=stop)
    finally:
        backend.close()
        if "p" in bar:
            bar["p"].close()
    return Lines(report.lines(), problems=report.problems(), waiting=report.waiting, fire_at=report.fire_at)


def digest_status(ctx: Context, name: str, *, at: datetime) -> Lines:
    """Counts per state of the issue of ``name`` for ``at``, and the possible duplicates."""
    from pipeline.delivery import issue_rows, ledger
    from pipeline.digests.plan import issue_period
    from pipeline.digests.send import reason_lines

    schedule = ctx.schedule
    schedule.digest(name)
    _, fire = issue_period(schedule.job_for_digest(name), at=at)
    with ctx.engine.connect() as conn:
        issue_id = issue_rows.find_issue(conn, name, fire)
        if issue_id is None:
            return Lines([f"Digest {name}: the issue of {fire.isoformat()} has not been sent yet."])
        counts = ledger.counts(conn, issue_id)
        why = ledger.reasons(conn, issue_id, counts)
    total = sum(counts[s] for s in ledger.STATES)
    lines = [f"Digest {name}: issue {issue_id} of {fire.isoformat()} ({total} recipients)"]
    lines += [f"  {state:<11} {counts[state]}" for state in ledger.STATES]
    lines.append(f"  possible duplicates (in flight during a crash): {counts['possible_duplicate']}")
    lines += reason_lines(why)
    open_rows = counts["pending"] + counts["in_flight"]
    if open_rows:
        lines.append(f"not complete: {open_rows} waiting; run `pipeline digest send {name} --at {fire.isoformat()}`, "
                     "or let the scheduler finish it")
    elif counts["unknown"]:
        lines.append(f"not complete: {counts['unknown']} with an unknown outcome; check the provider's activity log")
    else:
        lines.append("complete")
    return Lines(lines, waiting=open_rows, fire_at=fire)


def preview_digest(ctx: Context, name: str, *, at: datetime, topics: tuple[str, ...], out: Path) -> str:
    from pipeline.digests.send import preview_digest as preview

    html = preview(name, at=at, settings=ctx.settings, library=ctx.library(), schedule=ctx.schedule,
                   topics=topics or None)
    write_atomic(out, html, skip_unchanged=False)
    return f"wrote {out}"
