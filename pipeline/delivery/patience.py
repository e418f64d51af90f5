"""How long a send waits for a relay or an API that does not answer: backoff between tries, and a limit
(PIPELINE_RELAY_PATIENCE) after which the send stops and leaves its recipients waiting for a later run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.errors import RelayUnavailable

log = logging.getLogger("pipeline.delivery")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 15.0


def duration_words(seconds: float) -> str:
    """120 -> "2 minutes", 5 -> "5 seconds", 90 -> "90 seconds"."""
    s = round(seconds)
    if s >= 60 and s % 60 == 0:
        m = s // 60
        return f"{m} minute{'s' if m != 1 else ''}"
    return f"{s} second{'s' if s != 1 else ''}"


class Patience:
    """One streak of failures at a time: ``ok()`` ends it; ``wait()`` sleeps before the next try, or raises
    RelayUnavailable once the streak has lasted ``limit_s``."""

    def __init__(self, limit_s: float, *, where: str, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, first_delay: float = FIRST_DELAY_S,
                 max_delay: float = MAX_DELAY_S, max_tries: int | None = None):
        self.limit_s = max(0.0, limit_s)
        self.where = where
        self._sleep, self._clock = sleep, clock
        self.first_delay, self.max_delay, self.max_tries = first_delay, max_delay, max_tries
        self._since: float | None = None
        self._tries = 0

    def ok(self) -> None:
        self._since, self._tries = None, 0

    def failed(self, cause: str, *, in_doubt: bool = False) -> None:
        """Note a failure without waiting; raises RelayUnavailable when the streak is past the limit."""
        now = self._clock()
        if self._since is None:
            self._since = now
        self._tries += 1
        if now - self._since >= self.limit_s or (self.max_tries is not None and self._tries > self.max_tries):
            raise RelayUnavailable(f"{self.where} has not answered for {duration_words(self.limit_s)} ({cause})",
                                   where=self.where, waited=now - self._since, in_doubt=in_doubt)

    def wait(self, cause: str, *, at_least: float | None = None, in_doubt: bool = False) -> float:
        """After a failure worth retrying: sleep, then return the time slept; or raise RelayUnavailable."""
        self.failed(cause, in_doubt=in_doubt)
        delay = min(self.max_delay, self.first_delay * 2 ** (self._tries - 1))
        if at_least is not None:
            delay = max(delay, at_least)
        assert self._since is not None
        delay = max(0.0, min(delay, self._since + self.limit_s - self._clock()))
        log.warning("%s: %s; trying again in %.1fs", self.where, cause, delay,
                    extra={"action": "relay_waiting", "attempt": self._tries})
        self._sleep(delay)
        return delay
