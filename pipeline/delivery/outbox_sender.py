"""The outbox sender: delivers what pipeline.delivery.outbox holds, in a background thread of every `pipeline run`
(and `pipeline serve`), or once from `pipeline outbox send`.

Each try goes through the backend's transactional path with patience 0 (pipeline.delivery.factory), so a relay in
trouble answers at once and the waiting happens here, per message, without holding anything:
- sent: done, body cleared.
- a refusal of this message (SMTP 5xx for the recipient, an API 4xx other than 429): failed at once, with its
  reason, body cleared.
- the relay or API is away, busy (SMTP 4xx, HTTP 429/5xx) or the outcome is unknown: tried again after an
  exponential backoff with jitter (first within ``first``, at most ``cap`` apart, and never sooner than a
  Retry-After), until ``give_up`` after the message was written; then dropped, never sent stale.
- a setting is wrong (TLS trust, login, API key, backend name): logged at error level naming the setting, and the
  message waits without spending its tries; nothing is sent until an operator fixes it.
Several senders share the work through leases (outbox.claim), so each message is sent once.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses

from pipeline.delivery import outbox
from pipeline.errors import ConfigError, DeliveryError, DeliverySetupError, DeliveryUnknown, RelayUnavailable

log = logging.getLogger("pipeline.delivery")

FIRST = timedelta(seconds=10)  # the first retry comes within this (jitter takes it down to half)
CAP = timedelta(seconds=60)  # so a message goes out within about a minute of an outage ending
GIVE_UP = timedelta(hours=24)
LEASE = timedelta(minutes=5)  # a sender that dies mid-send frees its messages after this
RETRY_AFTER_MAX = timedelta(hours=1)
PASS_MAX = 2000  # messages tried in one pass at most (the ids tried are kept out of the pass's later claims)
_NOT_ANSWERED = re.compile(r" has not answered for 0 seconds")
_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def backoff(attempts: int, *, first: timedelta, cap: timedelta, rng: Callable[[], float]) -> timedelta:
    """The wait after ``attempts`` failed tries: doubling from ``first``, capped, with jitter (50-100%)."""
    base = min(cap.total_seconds(), first.total_seconds() * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base * (0.5 + rng() / 2))


def scrub(text: str, msg: EmailMessage | None = None) -> str:
    """A reason fit to store and log: without the recipient's address (an SMTP refusal often quotes it)."""
    if msg is not None:
        for _name, addr in getaddresses(msg.get_all("To", [])):
            if addr:
                text = text.replace(addr, "<recipient>")
    return _ADDRESS.sub("<address>", text)


@dataclass
class Sent:
    """What one pass did."""

    sent: int = 0
    failed: int = 0
    retrying: int = 0
    dropped: int = 0
    setup: list[str] = field(default_factory=list)  # setup problems met (a setting to fix)
    failures: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.retrying


class OutboxSender:
    """``send(msg)`` is the transport (default: the configured backend's transactional path). The clock and the
    backoff constants are parameters so tests can run a day of retries in seconds."""

    def __init__(self, engine, settings=None, *, send: Callable[[EmailMessage], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), first: timedelta = FIRST,
                 cap: timedelta = CAP, give_up: timedelta = GIVE_UP, lease: timedelta = LEASE,
                 rng: Callable[[], float] = random.random, batch: int = 20, poll: float = 1.0):
        if send is None:
            from pipeline.delivery.transactional import send_message

            def send(msg, _settings=settings):
                send_message(_settings, msg)
        self.engine, self.send, self.clock = engine, send, clock
        self.first, self.cap, self.give_up, self.lease = first, cap, give_up, lease
        self.rng, self.batch, self.poll = rng, batch, poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._setup_logged: str | None = None

    def run_once(self, *, waiting_too: bool = False) -> Sent:
        """Drop what is too old, then try every message due now (in batches), once each. ``waiting_too``: also those
        waiting for a retry (an operator who runs `outbox send` wants a try now)."""
        done = Sent()
        if not outbox.anything_pending(self.engine):
            return done
        now = self.clock()
        done.dropped = outbox.drop_stale(self.engine, now=now, max_age=self.give_up)
        if done.dropped:
            log.warning("outbox: dropped %d message(s) not sent within %.0f hours", done.dropped,
                        self.give_up.total_seconds() / 3600,
                        extra={"action": "outbox_dropped", "count": done.dropped})
        seen: set[int] = set()
        # Each message once a pass, so a short backoff cannot keep one pass going for ever; the next pass (a poll
        # later) takes what is due again. A very long pass stops early and lets the next one go on.
        while not self._stop.is_set() and len(seen) < PASS_MAX:
            claimed = outbox.claim(self.engine, now=self.clock(), lease=self.lease, limit=self.batch,
                                   due_only=not waiting_too, skip=frozenset(seen))
            if not claimed:
                break
            for c in claimed:
                seen.add(c.id)
                self._one(c, done)
        return done

    def _one(self, c: outbox.Claimed, done: Sent) -> None:
        try:
            self.send(c.message)
        except (DeliverySetupError, ConfigError) as exc:
            reason = scrub(str(exc), c.message)
            done.setup.append(reason)
            if reason != self._setup_logged:
                log.error("outbox: nothing can be sent until this setting is fixed: %s", reason,
                          extra={"action": "outbox_setup_error"})
                self._setup_logged = reason
            outbox.retry_later(self.engine, c, due=self.clock() + self.cap, reason=f"waiting: {reason}",
                               count=False)
            done.retrying += 1
            return
        except (RelayUnavailable, DeliveryUnknown) as exc:
            # The transactional path waits for nobody (patience 0): "has not answered for 0 seconds" means it did not.
            reason = _NOT_ANSWERED.sub(" did not take it", scrub(str(exc), c.message))
            self._retry(c, done, reason=reason, asked=getattr(exc, "retry_after", None))
            return
        except DeliveryError as exc:
            reason = scrub(str(exc), c.message)
            outbox.finish(self.engine, c, "failed", at=self.clock(), reason=reason)
            log.warning("outbox: a %s message was refused: %s", c.kind, reason,
                        extra={"action": "outbox_failed", "kind": c.kind})
            done.failed += 1
            done.failures.append(reason)
            return
        except Exception as exc:  # a bug or an OS error: keep the message, say what kind
            self._retry(c, done, reason=f"unexpected {type(exc).__name__}", asked=None)
            log.debug("outbox unexpected failure detail", exc_info=True)
            return
        self._setup_logged = None
        if outbox.finish(self.engine, c, "sent", at=self.clock()):
            done.sent += 1
            log.info("outbox: %s message sent", c.kind, extra={"action": "outbox_sent", "kind": c.kind})

    def _retry(self, c: outbox.Claimed, done: Sent, *, reason: str, asked: float | None) -> None:
        wait = backoff(c.attempts + 1, first=self.first, cap=self.cap, rng=self.rng)
        if asked is not None:
            wait = max(wait, min(timedelta(seconds=asked), RETRY_AFTER_MAX))
        outbox.retry_later(self.engine, c, due=self.clock() + wait, reason=f"waiting: {reason}")
        log.info("outbox: a %s message will be tried again in %.0f s", c.kind, wait.total_seconds(),
                 extra={"action": "outbox_retry", "kind": c.kind})
        done.retrying += 1

    # --- the background thread -----------------------------------------------------------------------------------

    def start(self) -> OutboxSender:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="outbox-sender", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the database away for a moment: keep the thread, try again next poll
                # Only the kind at warning: a database error's text can quote the stored message.
                log.warning("outbox sender: a pass failed (%s); trying again", type(exc).__name__,
                            extra={"action": "outbox_pass_failed"})
                log.debug("outbox pass failure detail", exc_info=True)
            self._wake.wait(self.poll)
            self._wake.clear()
