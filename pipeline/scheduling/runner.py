"""The scheduler loop: the only importer of APScheduler, and one of the two places that read the clock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pipeline.schedules import WAVE_EVERY, Job, Schedule
from pipeline.scheduling.tasks import STOPPING

log = logging.getLogger("pipeline.scheduling")
TASK_REF = "pipeline.scheduling.tasks:run_task"
# A digest issue left with recipients waiting (the relay stayed away) is tried again: soon at first, then less
# often, while its job's misfire_grace lasts.
RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(minutes=15)


def is_local(schedule: Schedule, job: Job) -> bool:
    return job.task == "send-digest" and job.digest in schedule.digests and \
        schedule.digest(job.digest).deliver_at == "local"


def retry_delay(retries: int, *, first: timedelta = RETRY_FIRST, cap: timedelta = RETRY_MAX) -> timedelta:
    """The wait before retry number ``retries`` + 1 of one issue: first, doubling, at most cap."""
    return min(cap, first * (2 ** min(retries, 30)))


def trigger_for(job: Job) -> CronTrigger:
    # Day names, never numbers: APScheduler 3 counts weekdays from Monday=0, cron from Sunday=0.
    return CronTrigger.from_crontab(job.dow_names_cron(), timezone=job.tz)


def _on_event(event: JobEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning("job %s missed its run at %s (beyond its misfire_grace); skipped so nothing stale is sent",
                    event.job_id, event.scheduled_run_time.isoformat(), extra={"action": "job_missed", "job": event.job_id})
    elif event.code == EVENT_JOB_ERROR:
        log.error("job %s crashed: %r", event.job_id, event.exception, extra={"action": "job_crashed", "job": event.job_id})


class Retrier:
    """Listens for digest runs that left recipients waiting, and schedules the same issue again."""

    def __init__(self, scheduler: BackgroundScheduler, schedule: Schedule, *, task_ref: str, first: timedelta,
                 cap: timedelta, clock: Callable[[], datetime]):
        self.scheduler, self.schedule, self.task_ref = scheduler, schedule, task_ref
        self.first, self.cap, self.clock = first, cap, clock
        self.retries: dict[tuple[str, str], int] = {}  # (job id, fire time) -> retries scheduled so far
        self.lock = threading.Lock()

    def __call__(self, event: JobExecutionEvent) -> None:
        left = getattr(event, "retval", None)
        if not isinstance(left, dict) or not left.get("waiting"):
            return
        if STOPPING.is_set() or self.scheduler.state == STATE_STOPPED:
            # Shutting down holds the job store lock while it waits for this thread: adding a job would deadlock.
            # The next start resumes the issue (resume_unfinished).
            return
        job = next((j for j in self.schedule.jobs if j.id == left["job"]), None)
        if job is None:
            return
        fire = datetime.fromisoformat(left["fire_at"])
        key = (job.id, left["fire_at"])
        with self.lock:
            for old in [k for k in self.retries if k[0] == job.id and k != key]:
                del self.retries[old]  # a newer issue of the job: the count starts again
            n = self.retries.get(key, 0)
            self.retries[key] = n + 1
        when = self.clock() + retry_delay(n, first=self.first, cap=self.cap)
        if when - fire > job.misfire_grace:
            log.warning("the %s issue of %s still has %d recipients waiting and is past its %s grace; not retried. "
                        "To finish it, run: pipeline digest send %s --at %s", job.digest, fire.isoformat(),
                        left["waiting"], job.misfire_grace, job.digest, fire.isoformat(),
                        extra={"action": "digest_left_unfinished", "job": job.id})
            return
        self.scheduler.add_job(self.task_ref, trigger="date", run_date=when, id=f"{job.id}:retry",
                               name=f"{job.id} (retry)", args=[job.id, fire.isoformat()], jobstore="once",
                               replace_existing=True, misfire_grace_time=int(job.misfire_grace.total_seconds()))
        log.info("the %s issue of %s has %d recipients waiting; trying again at %s", job.digest, fire.isoformat(),
                 left["waiting"], when.isoformat(), extra={"action": "digest_retry_scheduled", "job": job.id})


def make_scheduler(engine, schedule: Schedule, *, task_ref: str = TASK_REF, retry_first: timedelta = RETRY_FIRST,
                   retry_max: timedelta = RETRY_MAX,
                   clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> BackgroundScheduler:
    """A scheduler over a persistent job store in the pipeline's own database, with schedules.yaml applied. A
    digest run that leaves recipients waiting is retried (``retry_first``, doubling up to ``retry_max``) while
    within its job's misfire_grace."""
    scheduler = BackgroundScheduler(
        # "once": runs decided at start-up (resume_unfinished), decided afresh at every start, so never stored.
        jobstores={"default": SQLAlchemyJobStore(engine=engine), "once": MemoryJobStore()},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=schedule.timezone,
    )
    scheduler.add_listener(_on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    scheduler.add_listener(Retrier(scheduler, schedule, task_ref=task_ref, first=retry_first, cap=retry_max,
                                   clock=clock), EVENT_JOB_EXECUTED)
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
        if is_local(schedule, job):
            # Decided afresh at every start ("once"), and first run at once: a wave that came while we were down
            # is sent now if within its grace, and reported with the command to send it if not.
            start = clock()
            quarter = start.replace(minute=start.minute - start.minute % 15, second=0, microsecond=0)
            scheduler.add_job(task_ref, trigger=IntervalTrigger(seconds=int(WAVE_EVERY.total_seconds()),
                                                                start_date=quarter, timezone=UTC),
                              id=f"{job.id}:waves", name=f"{job.id} (waves)", args=[job.id], jobstore="once",
                              replace_existing=True, misfire_grace_time=int(WAVE_EVERY.total_seconds()))
            if quarter < start:
                scheduler.add_job(task_ref, trigger="date", run_date=start, id=f"{job.id}:waves-start",
                                  name=f"{job.id} (waves, on start)", args=[job.id], jobstore="once",
                                  replace_existing=True, misfire_grace_time=int(WAVE_EVERY.total_seconds()))
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
        if job.task != "send-digest" or regular is None or (regular.next_run_time or now) <= now \
                or is_local(schedule, job):
            # Not a digest, or its own missed run is about to fire and finish the issue anyway, or its waves job
            # runs at start.
            continue
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
    """Serve the web app in the foreground until Ctrl-C/SIGTERM. Holding the scheduler lock, build the feeds and run
    the scheduler too; otherwise stand by and take over when the active one dies."""
    from pipeline import operations
    from pipeline.delivery.outbox_sender import OutboxSender
    from pipeline.scheduling.lock import SchedulerLock
    from pipeline.scheduling.standby import Leadership
    from pipeline.web.server import serve

    def start() -> Callable[[], None]:
        report = operations.build_feeds(ctx, at=datetime.now(UTC))
        log.info("feeds: %s", report.summary(), extra={"action": "feeds_built"})
        scheduler = make_scheduler(ctx.engine, ctx.schedule)
        resume_unfinished(scheduler, ctx.engine, ctx.schedule, now=datetime.now(UTC))
        scheduler.resume()
        for job_id, when in next_runs(scheduler).items():
            log.info("job %s next runs at %s", job_id, when.isoformat() if when else "never", extra={"action": "job_scheduled"})

        def stop() -> None:
            STOPPING.set()
            try:
                scheduler.shutdown(wait=True)
            finally:
                STOPPING.clear()
            log.info("scheduler stopped", extra={"action": "scheduler_stopped"})

        return stop

    leadership = Leadership(SchedulerLock(ctx.engine, ctx.settings.var_dir), start=start)
    leadership.begin()  # the lock before anything else: a standby builds nothing
    # Active or standby, every run sends the outbox: leases keep two senders off one message.
    sender = OutboxSender(ctx.engine, ctx.settings).start()
    try:
        serve(ctx, host=host, port=port)  # returns on SIGINT or SIGTERM
    finally:
        sender.stop()
        leadership.close()
