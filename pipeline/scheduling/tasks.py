"""What a scheduled job runs. Importable by reference, because the persistent job store keeps only a name."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

log = logging.getLogger("pipeline.scheduling")
# Set while the scheduler shuts down: a digest being sent stops after the batch that is out, and the next start
# finishes it (runner.resume_unfinished), instead of holding the shutdown for the rest of the list.
STOPPING = threading.Event()


def run_task(job_id: str) -> None:
    """Run one job from schedules.yaml with fresh settings and content, as the CLI would."""
    from pipeline import jobs
    from pipeline.context import Context
    from pipeline.errors import PipelineError
    from pipeline.settings import load_settings

    ctx = Context(load_settings())
    at = datetime.now(UTC)
    try:
        job = next((j for j in ctx.schedule.jobs if j.id == job_id), None)
        if job is None:
            log.warning("job %s is no longer in schedules.yaml; nothing to do", job_id, extra={"action": "job_unknown"})
            return
        if job.task == "build-feeds":
            report = jobs.build_feeds(ctx, at=at)
        elif job.task == "fetch-sources":
            report = jobs.fetch_sources(ctx, at=at)
        else:
            report = jobs.send_digest(ctx, job.digest, at=at, stop=STOPPING)
        log.info("job %s: %s", job_id, report.summary(), extra={"action": "job_done", "job": job_id})
    except PipelineError as exc:
        log.error("job %s failed: %s", job_id, exc, extra={"action": "job_failed", "job": job_id})
