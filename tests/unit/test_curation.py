"""Pure parts of the curation inbox: canonical URLs, address rules, feed parsing and plain text, Retry-After."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.curation.fetch import retry_after
from pipeline.curation.inbox import canonical_url
from pipeline.curation.netguard import AddressPolicy, Refused, why_forbidden
from pipeline.curation.parse import ParseError, parse_feed, plain
from pipeline.curation.run import backoff
from pipeline.curation.sources import WatchedSource

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"


@pytest.mark.parametrize(("url", "canonical"), [
    ("HTTPS://News.Example.ORG/a/B?x=1#frag", "https://news.example.org/a/B?x=1"),
    ("https://example.org/a?utm_source=rss&id=7&UTM_Medium=x", "https://example.org/a?id=7"),
    ("http://example.org:80/a", "http://example.org/a"),
    ("https://example.org:8443/a", "https://example.org:8443/a"),
    ("https://example.org", "https://example.org/"),
])
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


def test_the_same_story_has_one_canonical_url_whatever_the_feed_adds():
    assert canonical_url("https://news.example.org/press/new-option-mbc?utm_source=rss&utm_medium=feed") == \
        canonical_url("HTTPS://NEWS.EXAMPLE.ORG/press/new-option-mbc?utm_campaign=blog#top")


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "::ffff:93.184.215.14", "8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert why_forbidden(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.53", "169.254.1.1", "192.168.2.2", "172.31.0.1",
                                     "100.100.0.1", "0.0.0.0", "255.255.255.255", "239.1.1.1", "::", "::1",
                                     "fe80::abcd", "fc00::1", "ff05::2", "::ffff:192.168.0.1", "2002:c0a8:1::1",
                                     "2001:db8::1", "64:ff9b:1::1"])
def test_non_public_addresses_are_forbidden(address):
    assert why_forbidden(ipaddress.ip_address(address))


def test_policy_refuses_a_mixed_answer_and_can_be_opened_for_tests():
    mixed = AddressPolicy(resolver=lambda host, port: ["93.184.215.14", "10.0.0.9"])
    with pytest.raises(Refused, match="10.0.0.9, a private address"):
        mixed.address_for("feeds.example.org", 443)
    public = AddressPolicy(resolver=lambda host, port: ["93.184.215.14", "2606:4700::1"])
    assert public.address_for("feeds.example.org", 443) == "93.184.215.14"
    assert AddressPolicy(allow_private=True, resolver=mixed.resolver).address_for("feeds.example.org", 80) == "93.184.215.14"
    with pytest.raises(Refused, match="loopback"):
        AddressPolicy().address_for("[::1]", 80)  # a literal address is checked without any resolver


def test_three_fixture_formats_parse_to_plain_items():
    rss = parse_feed((FEEDS / "fda-press.rss.xml").read_bytes(), base_url="https://feeds.example.org/rss.xml")
    atom = parse_feed((FEEDS / "nci-currents.atom.xml").read_bytes(), base_url="https://blog.example.org/feed")
    rdf = parse_feed((FEEDS / "trials.rdf.xml").read_bytes(), base_url="https://trials.example.org/rss")
    assert [len(p.items) for p in (rss, atom, rdf)] == [2, 2, 1]
    assert rss.items[0].guid == "press-2026-0101"
    assert rss.items[0].summary == "The agency today approved a new option for some adults with metastatic breast cancer."
    assert atom.items[0].title == "Study looks at exercise during treatment for metastatic breast cancer"
    assert rdf.items[0].published == datetime(2026, 11, 17, 12, tzinfo=UTC)
    assert rdf.items[0].url == "https://trials.example.org/study/EX0001"


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><rss/>',
    '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE r [<!ENTITY a "b">]><rss/>'.encode("utf-16"),
    b'<?xml version="1.0"?><!DOCTYPE r [<!entity % p SYSTEM "http://10.0.0.1/x">%p;]><rss/>',
])
def test_entity_declarations_are_refused_in_any_encoding(body):
    with pytest.raises(ParseError, match="declares XML entities"):
        parse_feed(body, base_url="https://feeds.example.org/")


def test_relative_links_resolve_against_the_feed_and_other_schemes_are_left_out():
    body = b"""<rss version="2.0"><channel><title>t</title><link>https://feeds.example.org/</link><description>d</description>
    <item><title>Relative</title><link>/news/1</link></item>
    <item><title>Data</title><link>data:text/html,hi</link></item></channel></rss>"""
    parsed = parse_feed(body, base_url="https://feeds.example.org/rss.xml")
    assert [i.url for i in parsed.items] == ["https://feeds.example.org/news/1"] and parsed.skipped == 1


def test_plain_text_is_bounded_and_single_line():
    assert plain("<p>one\n\ntwo</p>\u2028three", 100) == "one two three"
    assert plain("&lt;script&gt;x()&lt;/script&gt;Safe", 100) == "Safe"
    long = plain("word " * 500, 50)
    assert len(long) == 50 and long.endswith("…")
    assert plain(None, 10) == ""


def test_keywords_match_title_or_summary_ignoring_case():
    s = WatchedSource(id="s", name="S", url="https://feeds.example.org/", topics=("t",), keywords=("Breast Cancer",))
    assert s.wants("New BREAST cancer drug", "") and s.wants("Approval", "for breast cancer")
    assert not s.wants("Pet food", "recall")
    assert WatchedSource(id="s", name="S", url="https://x.example.org/", topics=("t",)).wants("anything", "")


def test_retry_after_reads_seconds_and_dates_and_is_bounded():
    at = datetime(2026, 11, 19, 12, tzinfo=UTC)
    assert retry_after("120", at=at) == timedelta(minutes=2)
    assert retry_after("Thu, 19 Nov 2026 13:00:00 GMT", at=at) == timedelta(hours=1)
    assert retry_after("99999999", at=at) == timedelta(days=2)
    assert retry_after("Thu, 19 Nov 2020 13:00:00 GMT", at=at) == timedelta(0)
    assert retry_after("soon", at=at) is None and retry_after(None, at=at) is None


def test_backoff_grows_to_a_day():
    assert [backoff(n) for n in (1, 2, 3, 6, 20)] == [timedelta(0), timedelta(hours=2), timedelta(hours=4),
                                                      timedelta(hours=24), timedelta(hours=24)]


def test_an_articles_origin_is_plain_text_and_needs_a_link():
    from pipeline.content.loader import parse_article

    base = """---
title: "A title"
summary: "A summary."
topics: [t]
status: draft
publish_at: 2026-11-19T12:00:00Z
{extra}
---
Body.
"""
    ok, problems = parse_article(base.format(extra='link: "https://news.example.org/a"\norigin: "the Example Agency"'),
                                 slug="a", path="content/a.md", topic_ids={"t"})
    assert ok is not None and ok.origin == "the Example Agency" and not problems
    _, problems = parse_article(base.format(extra='origin: "the Example Agency"'), slug="a", path="content/a.md",
                                topic_ids={"t"})
    assert [str(p) for p in problems] == ["content/a.md:7: origin: names where a linked item comes from; add the "
                                          "original's address as 'link: …'"]
    _, problems = parse_article(base.format(extra='link: "https://news.example.org/a"\norigin: "<b>Agency</b>"'),
                                slug="a", path="content/a.md", topic_ids={"t"})
    assert [p.field for p in problems] == ["origin"]
