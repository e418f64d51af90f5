"""Operational metrics in the Prometheus text format; the only importer of prometheus_client.

Counters count what this process did (the `pipeline run` or `pipeline serve` that answers ``GET /metrics``);
what the database knows, such as each digest's latest issue, is read at each scrape, so a send run from the
command line shows there too. Every label value comes from a fixed set: no label ever holds an address or a name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
OUTCOMES = frozenset({"sent", "failed", "unknown", "suppressed", "deferred"})
WEBHOOK_TYPES = frozenset({"processed", "dropped", "delivered", "deferred", "bounce", "blocked", "open", "click",
                           "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"})
ROLES = ("active", "standby", "web-only")
OUTBOX_STATES = ("pending", "sent", "failed", "dropped")

_registry = CollectorRegistry(auto_describe=True)
_messages = Counter("pipeline_messages", "Messages this process handed to its delivery backend, by outcome "
                    "(deferred: left waiting for a later try).", ["backend", "kind", "outcome"], registry=_registry)
_webhook_events = Counter("pipeline_webhook_events", "SendGrid Event Webhook events received and verified, by type.",
                          ["type"], registry=_registry)
_feed_build_time = Gauge("pipeline_feed_build_last_timestamp_seconds",
                         "When this process last finished a feed build (Unix time).", registry=_registry)
_feed_build_ok = Gauge("pipeline_feed_build_last_success", "1 if this process's last feed build succeeded, else 0.",
                       registry=_registry)
_feed_build_seconds = Gauge("pipeline_feed_build_last_duration_seconds", "How long the last feed build took.",
                            registry=_registry)
_role = Gauge("pipeline_scheduler_role", "1 for the scheduler role this process holds.", ["role"], registry=_registry)
_role.labels("web-only").set(1)
for _other in ROLES[:2]:
    _role.labels(_other).set(0)


def messages(backend: str, kind: str, counts: Mapping[str, int]) -> None:
    """Count one batch's outcomes (``kind``: digest, confirm, welcome …; unknown outcomes are not labels)."""
    for outcome, n in counts.items():
        if n and outcome in OUTCOMES:
            _messages.labels(backend, kind, outcome).inc(n)


def webhook_events(types: Iterable[object]) -> None:
    for kind in types:
        _webhook_events.labels(kind if isinstance(kind, str) and kind in WEBHOOK_TYPES else "other").inc()


def feed_build(*, finished_at: float, seconds: float, ok: bool) -> None:
    _feed_build_time.set(finished_at)
    _feed_build_seconds.set(seconds)
    _feed_build_ok.set(1 if ok else 0)


def scheduler_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown scheduler role {role!r}")
    for name in ROLES:
        _role.labels(name).set(1 if name == role else 0)


class _Issues:
    """Recipients of each digest's latest issue by ledger state, read from the database at scrape time."""

    def __init__(self, latest_counts):
        self._latest_counts = latest_counts

    def collect(self):
        family = GaugeMetricFamily("pipeline_digest_latest_issue_recipients",
                                   "Recipients of each digest's latest issue, by ledger state.",
                                   labels=["digest", "state"])
        fire = GaugeMetricFamily("pipeline_digest_latest_issue_fire_timestamp_seconds",
                                 "The fire time of each digest's latest issue (Unix time).", labels=["digest"])
        for digest, fired_at, counts in self._latest_counts():
            fire.add_metric([digest], fired_at.timestamp())
            for state, n in counts.items():
                family.add_metric([digest, state], n)
        yield family
        yield fire


class _Outbox:
    """The outbox (emails that are not digests) by state, and the oldest pending message's age, read at scrape time."""

    def __init__(self, read):
        self._read = read

    def collect(self):
        counts, oldest_age = self._read()
        depth = GaugeMetricFamily("pipeline_outbox_messages", "Messages in the outbox, by state.", labels=["state"])
        for state in OUTBOX_STATES:
            depth.add_metric([state], counts.get(state, 0))
        yield depth
        yield GaugeMetricFamily("pipeline_outbox_oldest_pending_age_seconds",
                                "How long the oldest pending outbox message has waited (0 when none waits).",
                                value=oldest_age or 0.0)


def exposition(latest_counts=None, outbox=None) -> bytes:
    """This process's counters, then what ``latest_counts()`` reads from the database:
    an iterable of (digest name, fire time, {state: count}); and what ``outbox()`` reads:
    ({state: count}, the oldest pending message's age in seconds or None)."""
    body = generate_latest(_registry)
    if latest_counts is not None or outbox is not None:
        per_scrape = CollectorRegistry(auto_describe=False)
        if latest_counts is not None:
            per_scrape.register(_Issues(latest_counts))
        if outbox is not None:
            per_scrape.register(_Outbox(outbox))
        body += generate_latest(per_scrape)
    return body
