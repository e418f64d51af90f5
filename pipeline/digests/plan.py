"""Plan one issue of a digest: its period, its articles, and which variant each subscriber gets.

Pure: no I/O and no clock. Subscribers with the same effective topics get the same articles, and subscribers
with the same articles share one variant, so each distinct email is rendered once however many people get it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple, Protocol

from pipeline.content.model import Article, Library
from pipeline.schedules import Digest, Job
from pipeline.subscribers.model import effective_topics, split_topics


class Reader(Protocol):
    """What planning needs of a subscriber (a Subscriber will do)."""

    @property
    def id(self) -> int: ...

    @property
    def topics(self) -> tuple[str, ...]: ...


class PlanEntry(NamedTuple):
    id: int
    topics: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Variant:
    key: str
    articles: tuple[Article, ...]
    # The topic sets that led here, sorted; informative only (archive, previews, reports).
    topic_sets: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, kw_only=True)
class IssuePlan:
    digest: str
    fire_at: datetime
    period_start: datetime  # exclusive
    period_end: datetime  # inclusive; fire_at, or the first wave's time for deliver_at: local
    articles: tuple[Article, ...]  # everything in the period within the digest's topics
    variants: dict[str, Variant]
    assignments: dict[int, str]  # subscriber id -> variant key
    skipped_empty: int = 0  # subscribers for whom the issue would be empty

    def recipients_of(self, key: str) -> list[int]:
        return [sid for sid, k in self.assignments.items() if k == key]


def issue_period(job: Job, *, at: datetime) -> tuple[datetime, datetime]:
    """(start, end] of the issue for the latest fire time at or before ``at``."""
    fire = job.previous_fire(at)
    return job.fire_before(fire), fire


def in_period(article: Article, start: datetime, end: datetime) -> bool:
    return article.status == "approved" and start < article.publish_at <= end


def period_articles(library: Library, digest: Digest, start: datetime, end: datetime) -> tuple[Article, ...]:
    """Approved articles published in (start, end] that touch the digest's topics, newest first."""
    wanted = None if digest.topics is None else frozenset(digest.topics)
    items = [a for a in library.articles
             if in_period(a, start, end) and (wanted is None or wanted.intersection(a.topics))]
    items.sort(key=lambda a: (a.publish_at, a.slug), reverse=True)
    return tuple(items)


def select_articles(articles: Iterable[Article], *, topics: frozenset[str], chosen: frozenset[str],
                    digest_topics: frozenset[str] | None, sensitive: frozenset[str]) -> tuple[Article, ...]:
    """The articles for one subscriber's effective ``topics``.

    An article matches when one of its topics is both the subscriber's and the digest's. An article that
    carries a sensitive topic (hospice, end of life) goes only to those who chose that topic themselves,
    even when it also carries an ordinary one.
    """
    allowed = topics if digest_topics is None else topics & digest_topics
    out = []
    for a in articles:
        if not allowed.intersection(a.topics):
            continue
        if any(t in sensitive and t not in chosen for t in a.topics):
            continue
        out.append(a)
    return tuple(out)


def variant_key(digest: str, articles: tuple[Article, ...]) -> str:
    """Short and stable: the same articles give the same key on every run."""
    text = digest + "\n" + "\n".join(a.slug for a in articles)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan_issue(library: Library, digest: Digest, job: Job, *, at: datetime,
               subscribers: Iterable[Reader], period: tuple[datetime, datetime, datetime] | None = None) -> IssuePlan:
    """Plan the issue of ``digest`` that ``at`` falls in, for these (already eligible) subscribers.

    ``period``: (start, fire, end) when it is not the job's (deliver_at: local ends it at the first wave)."""
    start, fire, end = period or (*issue_period(job, at=at), None)
    end = end or fire
    articles = period_articles(library, digest, start, end)
    defaults = tuple(library.default_topic_ids)
    known = frozenset(library.topic_ids)
    sensitive = frozenset(t.id for t in library.topics if t.sensitive)
    digest_topics = None if digest.topics is None else frozenset(digest.topics)

    variants: dict[str, tuple[Article, ...]] = {}
    sets_of: dict[str, set[tuple[str, ...]]] = {}
    key_of: dict[tuple[str, ...], str | None] = {}  # the subscriber's own choice -> variant key, or None if empty
    assignments: dict[int, str] = {}
    skipped = 0
    chosen_of: dict[tuple[str, ...], tuple[str, ...]] = {}  # topics as stored -> the known ones, sorted
    for sub in subscribers:
        chosen = chosen_of.get(sub.topics)
        if chosen is None:
            chosen = chosen_of[sub.topics] = tuple(sorted({t for t in sub.topics if t in known}))
        if chosen in key_of:
            key = key_of[chosen]
        else:
            topics = tuple(sorted(effective_topics(chosen, defaults)))
            picked = select_articles(articles, topics=frozenset(topics), chosen=frozenset(chosen),
                                     digest_topics=digest_topics, sensitive=sensitive)
            key = variant_key(digest.name, picked) if picked else None
            key_of[chosen] = key
            if key is not None:
                variants[key] = picked
                sets_of.setdefault(key, set()).add(topics)
        if key is None:
            skipped += 1
        else:
            assignments[sub.id] = key
    planned = {k: Variant(key=k, articles=v, topic_sets=tuple(sorted(sets_of[k]))) for k, v in sorted(variants.items())}
    return IssuePlan(digest=digest.name, fire_at=fire, period_start=start, period_end=end, articles=articles,
                     variants=planned, assignments=assignments, skipped_empty=skipped)


class TopicPlan(NamedTuple):
    plan: IssuePlan  # with no per-subscriber assignments
    variant_of: dict[str, str]  # topics as stored -> variant key, for the topics with something to send
    per_variant: dict[str, int]  # recipients of each variant
    recipients: int


def plan_by_topics(library: Library, digest: Digest, job: Job, *, at: datetime,
                   topic_counts: Iterable[tuple[str, int]],
                   period: tuple[datetime, datetime, datetime] | None = None) -> TopicPlan:
    """Plan for (topics as stored, how many eligible subscribers have them): a variant depends on a subscriber's
    topics alone, so an issue for a million subscribers is planned from a few dozen distinct topic choices."""
    counts = list(topic_counts)
    plan = plan_issue(library, digest, job, at=at, period=period,
                      subscribers=[PlanEntry(i, split_topics(stored)) for i, (stored, _n) in enumerate(counts)])
    variant_of: dict[str, str] = {}
    per_variant: dict[str, int] = {}
    skipped = 0
    for i, (stored, n) in enumerate(counts):
        key = plan.assignments.get(i)
        if key is None:
            skipped += n
            continue
        variant_of[stored] = key
        per_variant[key] = per_variant.get(key, 0) + n
    return TopicPlan(replace(plan, assignments={}, skipped_empty=skipped), variant_of, per_variant,
                     sum(per_variant.values()))


def generic_variant(plan: IssuePlan) -> Variant | None:
    """Everything in the issue, for the web archive and previews: what a reader of every topic would get."""
    if not plan.articles:
        return None
    return Variant(key=variant_key(plan.digest, plan.articles), articles=plan.articles)
