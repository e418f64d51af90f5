"""Content values: topics and articles. Frozen; change them with ``evolve``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

STATUSES = ("draft", "review", "approved", "retracted")


@dataclass(frozen=True, kw_only=True)
class Topic:
    id: str
    title: str
    description: str
    sensitive: bool = False


@dataclass(frozen=True, kw_only=True)
class Source:
    title: str
    url: str


@dataclass(frozen=True, kw_only=True)
class Article:
    slug: str
    title: str
    summary: str
    topics: tuple[str, ...]
    status: str
    publish_at: datetime
    sources: tuple[Source, ...] = ()
    reviewed_by: str | None = None
    reviewed_on: date | None = None
    updated_at: datetime | None = None
    author: str | None = None
    link: str | None = None
    origin: str | None = None  # who published the original that ``link`` points to
    content_notes: tuple[str, ...] = ()
    body: str = ""
    path: str = ""
    # Set by the live view: its medical review is over 12 months old. It stays live, marked with the due date.
    review_overdue: bool = False

    def is_live(self, at: datetime) -> bool:
        return self.status == "approved" and self.publish_at <= at

    def is_queued(self, at: datetime) -> bool:
        return self.status == "approved" and self.publish_at > at

    @property
    def modified(self) -> datetime:
        """When a reader should consider the item last changed."""
        return self.updated_at if self.updated_at and self.updated_at > self.publish_at else self.publish_at

    def evolve(self, **changes) -> Article:
        return replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class Library:
    """Everything loaded from content/: topics in file order and articles by slug."""

    topics: tuple[Topic, ...]
    articles: tuple[Article, ...]

    def topic(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(topic_id)

    @property
    def topic_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.topics)

    @property
    def default_topic_ids(self) -> tuple[str, ...]:
        """Topics a subscriber gets without choosing: every topic that is not sensitive."""
        return tuple(t.id for t in self.topics if not t.sensitive)

    def live(self, at: datetime) -> list[Article]:
        """Live articles, newest first (ties broken by slug so output is stable)."""
        items = [a for a in self.articles if a.is_live(at)]
        items.sort(key=lambda a: (a.publish_at, a.slug), reverse=True)
        return items
