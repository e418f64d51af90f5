"""Progress of a send, on stderr: a bar on a terminal, plain periodic lines otherwise (logs, cron, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, label: str = "sending", stream: TextIO | None = None, tty: bool | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.total = max(0, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.2 if self.tty else 10.0)
        self.clock = clock
        self.done = 0
        self.counts: dict[str, int] = {}
        self.started = clock()
        self._last = float("-inf")

    def advance(self, **counts: int) -> None:
        """Add outcomes (e.g. ``sent=998, failed=2``); redraw when the interval has passed."""
        for state, n in counts.items():
            self.counts[state] = self.counts.get(state, 0) + n
            self.done += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def close(self) -> None:
        self._draw(self.clock(), final=True)

    def _rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _draw(self, now: float, final: bool = False) -> None:
        detail = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()) if v)
        if self.tty:
            width = 30
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            line = f"\r{self.label} [{bar}] {frac:4.0%} {self.done}/{self.total} {self._rate(now):,.0f}/s {detail}"
            self.stream.write(line + ("\n" if final else ""))
        else:
            self.stream.write(f"{self.label}: {self.done}/{self.total} {detail} ({self._rate(now):,.0f}/s)\n")
        self.stream.flush()
