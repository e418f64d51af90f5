"""One run of the fetch job: every watched source in turn, each on its own, so one failing or hostile source
never stops the others. Health, backoff and Retry-After are kept per source."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from pipeline.curation import actions, inbox
from pipeline.curation.fetch import DEFAULT_LIMITS, FetchError, Limits, fetch
from pipeline.curation.netguard import AddressPolicy
from pipeline.curation.parse import KEEP_ITEMS, ParseError, parse_feed
from pipeline.curation.sources import WatchedSource

log = logging.getLogger("pipeline.curation")
MAX_BACKOFF = timedelta(hours=24)


def backoff(failures: int) -> timedelta:
    """After the first failure, try again at the next run; then wait 2 h, 4 h, 8 h … up to a day."""
    if failures <= 1:
        return timedelta(0)
    return min(timedelta(hours=2 ** (failures - 1)), MAX_BACKOFF)


@dataclass(frozen=True, kw_only=True)
class SourceResult:
    source_id: str
    outcome: str  # fetched | unchanged | failed | waiting
    found: int = 0
    kept: int = 0
    new: int = 0
    message: str = ""

    def line(self) -> str:
        if self.outcome == "fetched":
            return f"{self.source_id}: {self.found} items, {self.kept} kept, {self.new} new{self.message}"
        if self.outcome == "unchanged":
            return f"{self.source_id}: not changed since the last fetch"
        if self.outcome == "waiting":
            return f"{self.source_id}: waiting: {self.message}"
        return f"{self.source_id}: failed: {self.message}"


@dataclass(kw_only=True)
class FetchReport:
    results: list[SourceResult] = field(default_factory=list)
    dropped: int = 0

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if r.outcome == "failed"]

    def lines(self) -> list[str]:
        out = [r.line() for r in self.results]
        if self.dropped:
            out.append(f"dropped {self.dropped} candidates older than 90 days that nobody acted on")
        new = sum(r.new for r in self.results)
        out.append(f"{len(self.results)} sources: {new} new candidates, {len(self.failed)} failed"
                   + ("; see 'pipeline inbox list'" if new else ""))
        return out

    def summary(self) -> str:
        return "\n".join(self.lines())


def fetch_sources(engine: Engine, sources: Sequence[WatchedSource], *, at: datetime, policy: AddressPolicy,
                  agent: str, limits: Limits = DEFAULT_LIMITS, force: bool = False) -> FetchReport:
    """Fetch each source (``force``: even one that is backing off), store new candidates, drop stale ones."""
    report = FetchReport()
    with engine.begin() as conn:
        report.dropped = inbox.drop_stale(conn, at=at)
    for source in sources:
        try:
            result = _fetch_one(engine, source, at=at, policy=policy, agent=agent, limits=limits, force=force)
        except Exception as exc:  # a bug or a database hiccup on one source must not stop the others
            log.exception("source %s: unexpected error", source.id, extra={"action": "source_error", "source": source.id})
            result = SourceResult(source_id=source.id, outcome="failed", message=f"unexpected error ({type(exc).__name__}); see the log")
            try:
                with engine.begin() as conn:
                    inbox.save_health(conn, source.id, last_try_at=at, last_error=result.message)
            except Exception:  # the database itself may be what failed; the log has it already
                pass
        level = logging.WARNING if result.outcome == "failed" else logging.INFO
        log.log(level, "%s", result.line(), extra={"action": f"source_{result.outcome}", "source": source.id})
        report.results.append(result)
    return report


def _fetch_one(engine: Engine, source: WatchedSource, *, at: datetime, policy: AddressPolicy, agent: str,
               limits: Limits, force: bool) -> SourceResult:
    with engine.begin() as conn:
        health = inbox.health(conn, source.id)
    if not force and health.next_try_at is not None and health.next_try_at > at:
        why = f"after {health.failures} failures in a row" if health.failures > 1 else "the server asked us to wait"
        return SourceResult(source_id=source.id, outcome="waiting",
                            message=f"{why}, not before {health.next_try_at.isoformat()} (last error: {health.last_error})")
    try:
        fetched = fetch(source.url, policy=policy, agent=agent, at=at, limits=limits,
                        etag=health.etag, last_modified=health.last_modified)
        if fetched.status == 304:
            with engine.begin() as conn:
                inbox.save_health(conn, source.id, last_try_at=at, last_success_at=at, last_error=None,
                                  failures=0, next_try_at=None)
                actions.record(conn, "fetched", at=at, source_id=source.id, detail="not modified")
            return SourceResult(source_id=source.id, outcome="unchanged")
        parsed = parse_feed(fetched.body, base_url=fetched.url)
    except (FetchError, ParseError) as exc:
        failures = health.failures + 1
        waited = getattr(exc, "retry_after", None)
        wait = max(waited, backoff(failures)) if waited is not None else backoff(failures)
        message = str(exc) if isinstance(exc, FetchError) else f"the feed {exc}"
        with engine.begin() as conn:
            inbox.save_health(conn, source.id, last_try_at=at, last_error=message[:1000], failures=failures,
                              next_try_at=at + wait if wait else None)
        return SourceResult(source_id=source.id, outcome="failed", message=message)
    kept = [item for item in parsed.items if source.wants(item.title, item.summary)]
    notes = []
    if parsed.found > KEEP_ITEMS:
        notes.append(f"only the first {KEEP_ITEMS} read")
    if parsed.skipped:
        notes.append(f"{parsed.skipped} without an http(s) link left out")
    note = f" ({'; '.join(notes)})" if notes else ""
    with engine.begin() as conn:
        new = inbox.store_items(conn, source.id, kept, at=at)
        inbox.save_health(conn, source.id, last_try_at=at, last_success_at=at, last_error=None, failures=0,
                          next_try_at=None, items_seen=parsed.found, etag=(fetched.etag or "")[:500] or None,
                          last_modified=(fetched.last_modified or "")[:100] or None)
        actions.record(conn, "fetched", at=at, source_id=source.id,
                       detail=f"{parsed.found} items, {len(kept)} kept, {new} new{note}")
    return SourceResult(source_id=source.id, outcome="fetched", found=parsed.found, kept=len(kept), new=new,
                        message=note)
