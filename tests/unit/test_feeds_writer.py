from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import feedparser
import pytest

from pipeline.feeds import jsonfeed, rss_atom
from pipeline.feeds.model import Entry, FeedSpec, Site, feed_links

SITE = Site.make("https://digest.example.org", "MBC Digest")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def entry(slug: str, hours: int, **kw) -> Entry:
    base = dict(slug=slug, id=SITE.article_id(slug), url=SITE.article_url(slug), title=f"Title {slug}",
                summary=f"Summary {slug}", content_html=f"<p>{slug}</p>", published=T0 + timedelta(hours=hours),
                updated=T0 + timedelta(hours=hours), categories=(("a", "Topic A"),), author=None, external_url=None)
    base.update(kw)
    return Entry(**base)


def spec(entries) -> FeedSpec:
    return FeedSpec(name="all", id=SITE.feed_id("all"), title="MBC Digest", description="Every article.",
                    home_url=SITE.url + "/", links=feed_links(SITE, "all"), entries=tuple(entries),
                    author="MBC Digest")


ORDERED = [entry("c", 30), entry("b", 20), entry("a", 10)]


@pytest.mark.parametrize("make", [rss_atom.rss_bytes, rss_atom.atom_bytes])
def test_feedgen_output_keeps_our_order_not_prepended(make):
    parsed = feedparser.parse(make(spec(ORDERED)))
    assert parsed.bozo == 0
    assert [e.id for e in parsed.entries] == [e.id for e in ORDERED]


def test_json_feed_keeps_order_and_required_fields():
    data = json.loads(jsonfeed.json_bytes(spec(ORDERED)))
    assert [i["id"] for i in data["items"]] == [e.id for e in ORDERED]
    assert data["items"][0]["date_published"] == "2026-11-02T06:00:00Z"
    assert data["items"][0]["tags"] == ["Topic A"] and "authors" not in data["items"][0]


@pytest.mark.parametrize("make", [rss_atom.rss_bytes, rss_atom.atom_bytes, jsonfeed.json_bytes])
def test_output_is_deterministic(make):
    assert make(spec(ORDERED)) == make(spec(ORDERED))


def test_feed_date_is_the_newest_item_not_the_clock():
    assert feedparser.parse(rss_atom.rss_bytes(spec(ORDERED))).feed.updated == "Mon, 02 Nov 2026 06:00:00 +0000"
    assert feedparser.parse(rss_atom.atom_bytes(spec(ORDERED))).feed.updated == "2026-11-02T06:00:00+00:00"


def test_empty_feed_is_valid():
    for make, fmt in ((rss_atom.rss_bytes, "RSS"), (rss_atom.atom_bytes, "Atom")):
        parsed = feedparser.parse(make(spec([])))
        assert parsed.bozo == 0 and parsed.entries == [] and parsed.feed.title == f"MBC Digest ({fmt})"
    assert json.loads(jsonfeed.json_bytes(spec([])))["items"] == []


def test_author_without_email_appears_in_both_formats():
    e = entry("x", 1, author="Test Author")
    for make in (rss_atom.rss_bytes, rss_atom.atom_bytes):
        parsed = feedparser.parse(make(spec([e])))
        assert parsed.entries[0].author == "Test Author"
    assert json.loads(jsonfeed.json_bytes(spec([e])))["items"][0]["authors"] == [{"name": "Test Author"}]


def test_shared_entry_cache_gives_the_same_bytes_as_fresh_entries():
    cache = rss_atom.EntryCache()
    assert rss_atom.rss_bytes(spec(ORDERED), cache) == rss_atom.rss_bytes(spec(ORDERED))
    assert rss_atom.atom_bytes(spec(ORDERED[1:]), cache) == rss_atom.atom_bytes(spec(ORDERED[1:]))
