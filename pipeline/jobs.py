"""The operations that the CLI and the scheduler share, so a scheduled job runs exactly what a command runs."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.context import Context
from pipeline.feeds import BuildReport, build_site
from pipeline.fsio import write_atomic

log = logging.getLogger("pipeline.jobs")


@dataclass(frozen=True)
class Lines:
    lines: list[str]

    def summary(self) -> str:
        return "\n".join(self.lines)


def build_feeds(ctx: Context, *, at: datetime) -> BuildReport:
    s = ctx.settings
    return build_site(ctx.library(), at=at, public_dir=s.public_dir, site_url=s.site_url, templates_dir=s.templates_dir)


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
        if total is not None:
            bar["p"] = Progress(total, label=f"digest {name}")
        elif "p" in bar:
            bar["p"].advance(**{k: v for k, v in counts.items() if v})

    try:
        report = send(name, at=at, settings=ctx.settings, engine=ctx.engine, library=ctx.library(),
                      schedule=ctx.schedule, backend=backend, dry_run=dry_run,
                      on_batch=on_batch if progress and not dry_run else None, stop=stop)
    finally:
        backend.close()
        if "p" in bar:
            bar["p"].close()
    return Lines(report.lines())


def digest_status(ctx: Context, name: str, *, at: datetime) -> Lines:
    """Counts per state of the issue of ``name`` for ``at``, and the possible duplicates."""
    from pipeline.delivery import issue_rows, ledger
    from pipeline.digests.plan import issue_period

    schedule = ctx.schedule
    schedule.digest(name)
    _, fire = issue_period(schedule.job_for_digest(name), at=at)
    with ctx.engine.connect() as conn:
        issue_id = issue_rows.find_issue(conn, name, fire)
        if issue_id is None:
            return Lines([f"Digest {name}: the issue of {fire.isoformat()} has not been sent yet."])
        counts = ledger.counts(conn, issue_id)
    total = sum(counts[s] for s in ledger.STATES)
    lines = [f"Digest {name}: issue {issue_id} of {fire.isoformat()} ({total} recipients)"]
    lines += [f"  {state:<11} {counts[state]}" for state in ledger.STATES]
    lines.append(f"  possible duplicates (in flight during a crash): {counts['possible_duplicate']}")
    open_rows = counts["pending"] + counts["in_flight"]
    lines.append("complete" if not open_rows else f"not complete: {open_rows} left; run `pipeline digest send {name}`")
    return Lines(lines)


def preview_digest(ctx: Context, name: str, *, at: datetime, topics: tuple[str, ...], out: Path) -> str:
    from pipeline.digests.send import preview_digest as preview

    html = preview(name, at=at, settings=ctx.settings, library=ctx.library(), schedule=ctx.schedule,
                   topics=topics or None)
    write_atomic(out, html, skip_unchanged=False)
    return f"wrote {out}"
