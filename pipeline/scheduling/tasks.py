"""What a scheduled job runs. Importable by reference, because the persistent job store keeps only a name."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

log = logging.getLogger("pipeline.scheduling")
# Set while the scheduler shuts down: a digest being sent stops after the batch that is out, and the next start
# finishes it (runner.resume_unfinished), instead of holding the shutdown for the rest of the list.
STOPPING = threading.Event()


def run_task(job_id: str, at_iso: str | None = None) -> dict | None:
    """Run one job from schedules.yaml with fresh settings and content, as the CLI would. ``at_iso``: finish the
    digest issue of that time (a retry) instead of the latest one.

    Returns, for a digest issue left with waiting recipients, what the runner needs to retry it:
    ``{"job", "digest", "fire_at", "waiting"}``; else None."""
    from pipeline import operations
    from pipeline.context import Context
    from pipeline.errors import PipelineError
    from pipeline.settings import load_settings

    ctx = Context(load_settings())
    at = datetime.fromisoformat(at_iso) if at_iso else datetime.now(UTC)
    try:
        job = next((j for j in ctx.schedule.jobs if j.id == job_id), None)
        if job is None:
            log.warning("job %s is no longer in schedules.yaml; nothing to do", job_id, extra={"action": "job_unknown"})
            return None
        if job.task == "build-feeds":
            report = operations.build_feeds(ctx, at=at)
            log.info("job %s: %s", job_id, report.summary(), extra={"action": "job_done", "job": job_id})
            return None
        if job.task == "fetch-sources":
            report = operations.fetch_sources(ctx, at=at)
            log.info("job %s: %s", job_id, report.summary(), extra={"action": "job_done", "job": job_id})
            return None
        report = operations.send_digest(ctx, job.digest, at=at, stop=STOPPING)
        log.info("job %s: %s", job_id, report.summary(), extra={"action": "job_done", "job": job_id})
        for line in report.problems:
            log.warning("job %s: %s", job_id, line, extra={"action": "job_unfinished", "job": job_id})
        local = ctx.schedule.digest(job.digest).deliver_at == "local"  # its waves job, every 15 minutes, retries
        if report.due_waiting and report.fire_at is not None and not local and not STOPPING.is_set():
            return {"job": job_id, "digest": job.digest, "fire_at": report.fire_at.isoformat(),
                    "waiting": report.waiting}
        return None
    except PipelineError as exc:
        log.error("job %s failed: %s", job_id, exc, extra={"action": "job_failed", "job": job_id})
        return None
    finally:
        ctx.close()
