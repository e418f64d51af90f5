"""Plan the feeds as plain values: which articles go in which feed, with what ids, links and content.

Nothing here writes files or imports feedgen; writer.py and jsonfeed.py turn these values into bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

from markupsafe import Markup

from pipeline.content.model import Article, Library

# Feed and item ids are urn:uuid: names made from the slug under the installation's own namespace, kept with its
# database (store/site_keys.py): never from the site's address, so a new PIPELINE_SITE_URL (or the loopback
# default) changes no id. Builds without a database (tests, benchmarks) use this fixed one.
DEFAULT_ID_NAMESPACE = uuid.UUID("6c1f3b0e-3f4a-5b8e-9a57-2f6d0c4e8b21")
# Feed-level "updated" of a feed with no items: fixed, so an empty feed's bytes never change.
EMPTY_FEED_UPDATED = datetime(2026, 1, 1, tzinfo=UTC)
ALL = "all"
FORMATS = {
    "rss": ("rss.xml", "application/rss+xml", "RSS"),
    "atom": ("atom.xml", "application/atom+xml", "Atom"),
    "json": ("json", "application/feed+json", "JSON Feed"),
}


@dataclass(frozen=True, kw_only=True)
class Site:
    url: str  # no trailing slash
    title: str
    id_namespace: uuid.UUID = DEFAULT_ID_NAMESPACE

    @classmethod
    def make(cls, site_url: str, title: str, id_namespace: uuid.UUID | None = None) -> Site:
        return cls(url=site_url.rstrip("/"), title=title, id_namespace=id_namespace or DEFAULT_ID_NAMESPACE)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    def article_url(self, slug: str) -> str:
        return f"{self.url}/articles/{slug}.html"

    def feed_url(self, name: str, fmt: str) -> str:
        return f"{self.url}/feeds/{name}.{FORMATS[fmt][0]}"

    def article_id(self, slug: str) -> str:
        """Stable id: depends on the slug and the installation only, so an edited title is an update, not a new
        item, and a new site address changes nothing."""
        return f"urn:uuid:{uuid.uuid5(self.id_namespace, f'article:{slug}')}"

    def feed_id(self, name: str) -> str:
        return f"urn:uuid:{uuid.uuid5(self.id_namespace, f'feed:{name}')}"


@dataclass(frozen=True, kw_only=True)
class FeedLink:
    fmt: str
    url: str
    media_type: str
    label: str


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One article as it appears in every feed."""

    slug: str
    id: str
    url: str
    title: str
    summary: str
    content_html: str
    published: datetime  # UTC
    updated: datetime  # UTC
    categories: tuple[tuple[str, str], ...]  # (topic id, topic title)
    author: str | None
    external_url: str | None


@dataclass(frozen=True, kw_only=True)
class FeedSpec:
    name: str  # "all" or a topic id; also the file stem
    id: str
    title: str
    description: str
    home_url: str
    links: tuple[FeedLink, ...]
    entries: tuple[Entry, ...]
    author: str

    @property
    def updated(self) -> datetime:
        """Derived from the content, never from the clock, so identical inputs give identical bytes."""
        return max((e.updated for e in self.entries), default=EMPTY_FEED_UPDATED)

    def link(self, fmt: str) -> FeedLink:
        return next(link for link in self.links if link.fmt == fmt)

    def title_in(self, fmt: str) -> str:
        """The title a reader lists: the format named, so the RSS, Atom and JSON versions can be told apart."""
        return f"{self.title} ({FORMATS[fmt][2]})"


def utc(when: datetime) -> datetime:
    return when.astimezone(UTC)


def long_date(day: date) -> str:
    return f"{day:%B} {day.day}, {day.year}"


def feed_links(site: Site, name: str) -> tuple[FeedLink, ...]:
    return tuple(FeedLink(fmt=fmt, url=site.feed_url(name, fmt), media_type=mt, label=label)
                 for fmt, (_, mt, label) in FORMATS.items())


def content_html(article: Article, body: str) -> Markup:
    """Content note, sanitized body, then the review line, the external link and the sources, all escaped here."""
    parts = []
    if article.content_notes:
        # The same gentle warning as the article page, because feed readers show the content, not our page.
        parts.append(Markup("<p><em>Please note: this article talks about {}.</em></p>").format(
            ", ".join(article.content_notes)))
    parts.append(Markup(body))
    if article.link and article.origin:
        parts.append(Markup('<p>From {0}. Read the original: <a href="{1}">{1}</a></p>').format(
            article.origin, article.link))
    elif article.link:
        parts.append(Markup('<p>This item points to <a href="{0}">{0}</a>.</p>').format(article.link))
    if article.reviewed_by and article.reviewed_on:
        parts.append(Markup("<p>Medically reviewed by {} on {}.</p>").format(
            article.reviewed_by, long_date(article.reviewed_on)))
    if article.sources:
        items = Markup("").join(Markup('<li><a href="{}">{}</a></li>').format(s.url, s.title)
                                for s in article.sources)
        parts.append(Markup("<p>Sources:</p><ul>{}</ul>").format(items))
    return Markup("\n").join(parts)


def entry_for(article: Article, *, site: Site, library: Library, render: Callable[[str], str]) -> Entry:
    titles = {t.id: t.title for t in library.topics}
    return Entry(
        slug=article.slug,
        id=site.article_id(article.slug),
        url=site.article_url(article.slug),
        title=article.title,
        summary=article.summary,
        content_html=str(content_html(article, render(article.body))),
        published=utc(article.publish_at),
        updated=utc(article.modified),
        categories=tuple((t, titles.get(t, t)) for t in article.topics),
        author=article.author,
        external_url=article.link,
    )


def select_feeds(library: Library, live: Sequence[Article], *,
                 max_items: int | None) -> list[tuple[str, list[Article]]]:
    """(feed name, its articles newest first): the site-wide feed, then each topic in topics.yaml order."""
    cap = (lambda xs: xs) if max_items is None else (lambda xs: xs[:max_items])
    out = [(ALL, cap(list(live)))]
    for topic in library.topics:
        out.append((topic.id, cap([a for a in live if topic.id in a.topics])))
    return out


def feed_spec(name: str, articles: Sequence[Article], *, site: Site, library: Library,
              render: Callable[[str], str], entries: dict[str, Entry] | None = None) -> FeedSpec:
    """``entries`` caches Entry values by slug across feeds, so each article's content is built once."""
    entries = {} if entries is None else entries
    for a in articles:
        if a.slug not in entries:
            entries[a.slug] = entry_for(a, site=site, library=library, render=render)
    if name == ALL:
        title, description = site.title, f"Every article from {site.title}, newest first."
    else:
        topic = library.topic(name)
        title, description = f"{site.title}: {topic.title}", topic.description
    return FeedSpec(name=name, id=site.feed_id(name), title=title, description=description,
                    home_url=site.url + "/", links=feed_links(site, name), author=site.title,
                    entries=tuple(entries[a.slug] for a in articles))
