"""RSS 2.0 and Atom 1.0 through feedgen. This is the only module in the project that imports feedgen."""

from __future__ import annotations

from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator

from pipeline.feeds.model import Entry, FeedSpec

GENERATOR = "mbc-pipeline"


def _entry(e: Entry) -> FeedEntry:
    fe = FeedEntry()
    fe.load_extension("dc", atom=False, rss=True)
    fe.id(e.id)
    fe.title(e.title)
    # One link only: feedgen 1.0 drops rel/type of entry links in Atom (a shadowed variable in atom_entry),
    # so a second, "related" link would read as another alternate. The external link is in the content.
    fe.link(href=e.url, rel="alternate", type="text/html")
    fe.published(e.published)
    fe.updated(e.updated)
    fe.summary(e.summary)
    fe.content(e.content_html, type="html")
    fe.category([{"term": term, "label": label} for term, label in e.categories])
    if e.author:
        fe.author(name=e.author)
        fe.dc.dc_creator(e.author)  # RSS <author> needs an email address; dc:creator takes a name
    return fe


class EntryCache:
    """Build each FeedEntry once and share it between the site-wide and topic feeds."""

    def __init__(self) -> None:
        self._entries: dict[str, FeedEntry] = {}

    def get(self, e: Entry) -> FeedEntry:
        fe = self._entries.get(e.id)
        if fe is None:
            fe = self._entries[e.id] = _entry(e)
        return fe


def _generator(spec: FeedSpec, fmt: str, cache: EntryCache) -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(spec.id)
    fg.title(spec.title_in(fmt))
    fg.subtitle(spec.description)
    own = spec.link(fmt)
    fg.link(href=own.url, rel="self", type=own.media_type)
    fg.link(href=spec.home_url, rel="alternate", type="text/html")  # last: feedgen uses it as the RSS <link>
    fg.language("en")
    fg.author(name=spec.author, uri=spec.home_url)  # Atom needs an author for entries that have none
    fg.generator(GENERATOR)
    fg.updated(spec.updated)
    for e in spec.entries:
        fg.add_entry(cache.get(e), order="append")  # the default, 'prepend', would reverse the order
    return fg


def rss_bytes(spec: FeedSpec, cache: EntryCache | None = None) -> bytes:
    return _generator(spec, "rss", cache or EntryCache()).rss_str(pretty=True, encoding="UTF-8")


def atom_bytes(spec: FeedSpec, cache: EntryCache | None = None) -> bytes:
    return _generator(spec, "atom", cache or EntryCache()).atom_str(pretty=True, encoding="UTF-8")
