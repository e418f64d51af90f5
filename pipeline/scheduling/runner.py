"""The scheduler loop: the only importer of APScheduler, and one of the two places that read the clock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobEvent
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from pipeline.scheduling.schedule import Job, Schedule
from pipeline.scheduling.tasks import STOPPING

log = logging.getLogger("pipeline.scheduling")
TASK_REF = "pipeline.scheduling.tasks:run_task"


def trigger_for(job: Job) -> CronTrigger:
    # Day names, never numbers: APScheduler 3 counts weekdays from Monday=0, cron from Sunday=0.
    return CronTrigger.from_crontab(job.dow_names_cron(), timezone=job.tz)


def _on_event(event: JobEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning("job %s missed its run at %s (beyond its misfire_grace); skipped so nothing stale is sent",
                    event.job_id, event.scheduled_run_time.isoformat(), extra={"action": "job_missed", "job": event.job_id})
    elif event.code == EVENT_JOB_ERROR:
        log.error("job %s crashed: %r", event.job_id, event.exception, extra={"action": "job_crashed", "job": event.job_id})


def make_scheduler(engine, schedule: Schedule, *, task_ref: str = TASK_REF) -> BackgroundScheduler:
    """A scheduler over a persistent job store in the pipeline's own database, with schedules.yaml applied."""
    scheduler = BackgroundScheduler(
        # "once": runs decided at start-up (resume_unfinished), decided afresh at every start, so never stored.
        jobstores={"default": SQLAlchemyJobStore(engine=engine), "once": MemoryJobStore()},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=schedule.timezone,
    )
    scheduler.add_listener(_on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    scheduler.start(paused=True)
    wanted = {job.id for job in schedule.jobs}
    for stale in scheduler.get_jobs():
        if stale.id not in wanted:
            scheduler.remove_job(stale.id)
            log.info("removed job %s: no longer in schedules.yaml", stale.id, extra={"action": "job_removed"})
    for job in schedule.jobs:
        trigger = trigger_for(job)
        existing = scheduler.get_job(job.id)
        extra = {}
        if existing is not None and str(existing.trigger) == str(trigger) and existing.next_run_time is not None:
            # Keep the stored next run time, so a run missed while we were down still fires within its grace.
            extra["next_run_time"] = existing.next_run_time
        scheduler.add_job(task_ref, trigger=trigger, id=job.id, name=job.id, args=[job.id], replace_existing=True,
                          misfire_grace_time=int(job.misfire_grace.total_seconds()), **extra)
    return scheduler


def resume_unfinished(scheduler: BackgroundScheduler, engine, schedule: Schedule, *, now: datetime,
                      task_ref: str = TASK_REF) -> list[str]:
    """Run again, now, each digest job whose latest issue was left unfinished (the scheduler stopped or crashed
    mid-send) and is still within its job's misfire grace; its regular run has already fired, so nothing else
    would finish it. An unfinished issue past its grace is only reported: a late digest is worse than none.
    Returns the ids of the jobs queued."""
    from sqlalchemy import select

    from pipeline.store.tables import issues

    queued = []
    for job in schedule.jobs:
        regular = scheduler.get_job(job.id)
        if job.task != "send-digest" or regular is None or (regular.next_run_time or now) <= now:
            continue  # not a digest, or its own missed run is about to fire and finish the issue anyway
        fire = job.previous_fire(now)
        with engine.connect() as conn:
            unfinished = conn.execute(select(issues.c.id).where(
                issues.c.digest == job.digest, issues.c.fire_at == fire, issues.c.completed_at.is_(None))).first()
        if unfinished is None:
            continue
        if now - fire > job.misfire_grace:
            log.warning("the %s issue of %s was left unfinished and is past its %s grace; not resumed. To finish it, "
                        "run: pipeline digest send %s --at %s", job.digest, fire.isoformat(), job.misfire_grace,
                        job.digest, fire.isoformat(), extra={"action": "digest_left_unfinished", "job": job.id})
            continue
        scheduler.add_job(task_ref, trigger="date", id=f"{job.id}:resume", name=f"{job.id} (resumed)", args=[job.id],
                          jobstore="once", replace_existing=True,
                          misfire_grace_time=int(job.misfire_grace.total_seconds()))
        log.info("the %s issue of %s was left unfinished; resuming it now", job.digest, fire.isoformat(),
                 extra={"action": "digest_resumed", "job": job.id})
        queued.append(job.id)
    return queued


def next_runs(scheduler: BackgroundScheduler) -> dict[str, datetime | None]:
    return {j.id: j.next_run_time for j in scheduler.get_jobs()}


def run_forever(ctx, *, host: str, port: int) -> None:
    """Build the feeds, start the scheduler, serve the web app in the foreground; stop cleanly on Ctrl-C/SIGTERM."""
    from pipeline import jobs
    from pipeline.scheduling.lock import single_scheduler
    from pipeline.web.server import serve

    # The lock first: a second `pipeline run` refuses at once, without rebuilding every feed.
    with single_scheduler(ctx.engine, ctx.settings.var_dir):
        report = jobs.build_feeds(ctx, at=datetime.now(UTC))
        log.info("feeds: %s", report.summary(), extra={"action": "feeds_built"})
        scheduler = make_scheduler(ctx.engine, ctx.schedule)
        resume_unfinished(scheduler, ctx.engine, ctx.schedule, now=datetime.now(UTC))
        scheduler.resume()
        for job_id, when in next_runs(scheduler).items():
            log.info("job %s next runs at %s", job_id, when.isoformat() if when else "never", extra={"action": "job_scheduled"})
        try:
            serve(ctx, host=host, port=port)  # returns on SIGINT or SIGTERM
        finally:
            STOPPING.set()
            scheduler.shutdown(wait=True)
            STOPPING.clear()
            log.info("scheduler stopped", extra={"action": "scheduler_stopped"})
