"""Active or standby. Every `pipeline run` serves the web app; the one that holds the scheduler lock also runs the
scheduler, and the others stand by and take over within seconds of its death (kill -9, or on PostgreSQL its lock's
connection dropping)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pipeline import metrics
from pipeline.scheduling.lock import SchedulerLock

log = logging.getLogger("pipeline.scheduling")

POLL_SECONDS = 5.0  # how often a standby tries the lock, and the active checks it still holds it


class Leadership:
    """``start()`` makes this process the active scheduler and returns the function that stops it again."""

    def __init__(self, lock: SchedulerLock, *, start: Callable[[], Callable[[], None]], poll: float = POLL_SECONDS):
        self.lock = lock
        self.start = start
        self.poll = poll
        self._stop_active: Callable[[], None] | None = None
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="scheduler-standby", daemon=True)

    @property
    def active(self) -> bool:
        return self._stop_active is not None

    def begin(self) -> None:
        """Try the lock before any other start-up work; then keep watching it."""
        if self.lock.try_acquire():
            self._activate()
        else:
            metrics.scheduler_role("standby")
            log.info("another scheduler is active on this database (%s); this one serves the web app and stands by "
                     "to take over", self.lock.where, extra={"action": "scheduler_standby"})
        self._watcher.start()

    def _watch(self) -> None:
        while not self._closing.wait(self.poll):
            try:
                if self.active:
                    if not self.lock.held():
                        log.error("this scheduler lost its lock (its database connection dropped); it stops "
                                  "scheduling and stands by", extra={"action": "scheduler_lock_lost"})
                        self._deactivate()
                elif self.lock.try_acquire():
                    log.warning("the active scheduler is gone; this one takes over",
                                extra={"action": "scheduler_takeover"})
                    self._activate()
            except Exception as exc:  # noqa: BLE001 - the database may be away for a while; try again next poll
                log.error("scheduler standby check failed: %s", type(exc).__name__,
                          extra={"action": "scheduler_standby_error"})

    def _activate(self) -> None:
        try:
            self._stop_active = self.start()
        except BaseException:
            self.lock.release()
            metrics.scheduler_role("standby")
            raise
        metrics.scheduler_role("active")

    def _deactivate(self) -> None:
        stop, self._stop_active = self._stop_active, None
        metrics.scheduler_role("standby")
        try:
            if stop is not None:
                stop()
        finally:
            self.lock.release()

    def close(self) -> None:
        """Stop watching; if active, stop the scheduler and give the lock up for a standby to take."""
        self._closing.set()
        if self._watcher.is_alive():
            self._watcher.join()
        try:
            if self.active:
                self._deactivate()
        finally:
            self.lock.release()
            metrics.scheduler_role("web-only")
