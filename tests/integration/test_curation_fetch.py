"""Fetching watched sources from a loopback server that stands in for the outside world, hostile cases included.

The server is reached by host names that an injected resolver maps to 127.0.0.1, and the address policy treats
that one loopback address as "the outside": every other private address stays refused, as in production."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pipeline.curation import inbox
from pipeline.curation.fetch import Limits
from pipeline.curation.netguard import AddressPolicy
from pipeline.curation.run import fetch_sources
from pipeline.curation.sources import WatchedSource
from pipeline.store.tables import curation_actions
from tests.support.feed_server import FeedServer

AT = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
FAST = Limits(connect_timeout=2, read_timeout=1, total_timeout=2.5)
NAMES = {"feeds.example.org": ["127.0.0.1"], "blog.example.org": ["127.0.0.1"],
         "trials.example.org": ["127.0.0.1"], "internal.example.org": ["10.20.30.40"],
         "rebind.example.org": ["127.0.0.1", "192.168.0.7"]}


def resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise OSError(f"no such test host {host}")
    return NAMES[host]


POLICY = AddressPolicy(resolver=resolver, also_allowed=frozenset({"127.0.0.1"}))


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


def source(sid: str, url: str, *, keywords: tuple[str, ...] = (), topics=("treatment-progress",)) -> WatchedSource:
    return WatchedSource(id=sid, name=f"Source {sid}", url=url, topics=topics, keywords=keywords)


def good_sources(server) -> list[WatchedSource]:
    return [
        source("press", server.url("/fda-press.rss.xml", "feeds.example.org"), keywords=("breast cancer", "Oncology")),
        source("blog", server.url("/nci-currents.atom.xml", "blog.example.org")),
        source("trials", server.url("/trials.rdf.xml", "trials.example.org"), topics=("clinical-trials",)),
    ]


def run(engine, sources, *, at=AT, limits=FAST, policy=POLICY, force=False):
    return fetch_sources(engine, sources, at=at, policy=policy, agent="mbc-pipeline/test (+https://digest.example.org/)",
                         limits=limits, force=force)


def by_id(report):
    return {r.source_id: r for r in report.results}


def test_three_formats_become_one_inbox_with_the_same_story_once(engine, server):
    report = run(engine, good_sources(server))
    results = by_id(report)
    assert [r.outcome for r in report.results] == ["fetched"] * 3, report.summary()
    assert (results["press"].found, results["press"].kept, results["press"].new) == (2, 1, 1)  # keyword filter
    assert (results["blog"].found, results["blog"].new) == (2, 1)  # its second entry is the press story again
    assert results["trials"].new == 1
    with engine.connect() as conn:
        found = {c.url.split("?")[0]: c for c in inbox.candidates(conn)}
    assert len(found) == 3
    story = found["https://news.example.org/press/new-option-mbc"]
    assert story.sources == ("press", "blog")
    assert story.title == "Agency approves a new treatment option for a type of metastatic breast cancer"
    assert story.summary == "The agency today approved a new option for some adults with metastatic breast cancer."
    assert story.published == datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
    assert found["https://Blog.Example.org/posts/exercise-study#comments"].title.startswith("Study looks at exercise")
    # The polite User-Agent reached the server, and each source's health is kept.
    assert all("digest.example.org" in headers["user-agent"] for _, headers in server.requests)
    with engine.connect() as conn:
        health = inbox.all_health(conn)
    assert health["press"].last_success_at == AT and health["press"].items_seen == 2
    assert health["press"].etag and health["press"].last_modified == "Wed, 18 Nov 2026 21:00:00 GMT"


def test_a_gzip_encoded_feed_is_read(engine, server):
    report = run(engine, [source("gz", server.url("/gz/trials.rdf.xml", "feeds.example.org"))])
    assert report.results[0].outcome == "fetched" and report.results[0].new == 1, report.summary()
    assert server.requests[0][1]["accept-encoding"] == "gzip"


def test_a_second_fetch_with_the_same_etag_makes_no_new_candidates(engine, server):
    run(engine, good_sources(server))
    with engine.connect() as conn:
        before = [c.id for c in inbox.candidates(conn)]
    second = run(engine, good_sources(server), at=AT + timedelta(hours=1))
    assert [r.outcome for r in second.results] == ["unchanged"] * 3, second.summary()
    conditional = [headers for path, headers in server.requests if path == "/fda-press.rss.xml"]
    assert len(conditional) == 2 and "if-none-match" not in conditional[0]
    assert conditional[1]["if-none-match"] and conditional[1]["if-modified-since"] == "Wed, 18 Nov 2026 21:00:00 GMT"
    with engine.connect() as conn:
        assert [c.id for c in inbox.candidates(conn)] == before
        assert inbox.all_health(conn)["press"].last_success_at == AT + timedelta(hours=1)


def test_refetching_a_changed_feed_adds_only_what_is_new(engine, server):
    run(engine, good_sources(server))
    server.files["/trials.rdf.xml"] = server.files["/trials.rdf.xml"].replace(
        b"EX0001", b"EX0002").replace(b"sleep support", b"gentle movement")
    report = run(engine, good_sources(server), at=AT + timedelta(hours=1))
    assert by_id(report)["trials"].new == 1 and by_id(report)["press"].outcome == "unchanged"
    with engine.connect() as conn:
        assert len(inbox.candidates(conn)) == 4


HOSTILE = {
    "bomb": ("/bomb.xml", "declares XML entities"),
    "huge": ("/huge.xml", "larger than 5 MB"),
    "huge-chunked": ("/huge-chunked.xml", "larger than 5 MB"),
    "gzip-bomb": ("/gzip-bomb.xml", "larger than 5 MB"),
    "no-end": ("/chunked-no-end.xml", "timed out: the server sent nothing"),
    "slowloris": ("/slowloris.xml", "took longer than 2.5 s in all"),
    "invalid": ("/invalid.xml", "is not well-formed XML at line 2"),
    "flood": ("/flood.xml", "has about 10,000 items"),
    "to-private": ("/to-private", "refused: 10.0.0.1 is a private address"),
    "to-metadata": ("/to-metadata", "a link-local address"),
    "to-internal-name": ("/to-internal", "'internal.example.org' resolves to 10.20.30.40"),
    "rebinding": ("/rebind.xml", "'rebind.example.org' resolves to 192.168.0.7"),
    "loop": ("/loop/0", "more than 3 redirects"),
    "busy": ("/busy.xml", "the server answered 429"),
    "gopher": (None, "only http and https"),
}


def test_each_hostile_source_fails_alone_with_a_clear_error(engine, server):
    server.redirects["/to-private"] = "http://10.0.0.1/feed.xml"
    server.redirects["/to-metadata"] = "http://169.254.169.254/latest/meta-data/"
    server.redirects["/to-internal"] = f"http://internal.example.org:{server.port}/fda-press.rss.xml"
    hostile = []
    for sid, (path, _) in HOSTILE.items():
        host = "rebind.example.org" if sid == "rebinding" else "feeds.example.org"
        url = server.url(path, host) if path else "gopher://feeds.example.org/1/feed"
        hostile.append(source(sid, url))
    good = good_sources(server)
    # Good sources first, between and after the hostile ones: none of them is stopped by its neighbours.
    report = run(engine, [good[0], *hostile[:7], good[1], *hostile[7:], good[2]])
    results = by_id(report)
    for s in good:
        assert results[s.id].outcome == "fetched", results[s.id].line()
    for sid, (_, expected) in HOSTILE.items():
        assert results[sid].outcome == "failed", results[sid].line()
        assert expected in results[sid].message, (sid, results[sid].message)
    with engine.connect() as conn:
        health = inbox.all_health(conn)
        titles = [c.title for c in inbox.candidates(conn)]
    for sid in HOSTILE:
        assert health[sid].last_error == results[sid].message and health[sid].last_success_at is None
    assert len(titles) == 3 and not any("lol" in t or "Item " in t for t in titles)
    # Nothing was requested from a refused address: the redirects were followed only as far as the check.
    assert server.hits["/loop/3"] == 1 and server.hits["/loop/4"] == 0
    assert server.hits["/rebind.xml"] == 0


def test_the_entity_bomb_is_refused_without_parsing(engine, server, monkeypatch):
    import feedparser

    def must_not_parse(*args, **kwargs):
        raise AssertionError("feedparser was handed an entity bomb")

    monkeypatch.setattr(feedparser, "parse", must_not_parse)
    report = run(engine, [source("bomb", server.url("/bomb.xml", "feeds.example.org"))])
    assert "declares XML entities" in report.results[0].message


def test_html_and_scripts_in_titles_become_plain_text(engine, server):
    report = run(engine, [source("hostile", server.url("/hostile-titles.rss.xml", "feeds.example.org"))])
    assert report.results[0].kept == 1 and "1 without an http(s) link left out" in report.results[0].message
    with engine.connect() as conn:
        (cand,) = inbox.candidates(conn)
    assert cand.title == "Breast cancer news"
    assert cand.summary == "Summary with a link and style."
    for text in (cand.title, cand.summary):
        assert "<" not in text and "script" not in text and "alert" not in text


PRIVATE = {"127.0.0.1": "loopback", "10.1.2.3": "private", "172.16.5.4": "private", "192.168.1.1": "private",
           "169.254.169.254": "link-local", "0.0.0.0": "unspecified", "::1": "loopback", "fe80::1": "link-local",
           "fd00::1": "private", "::ffff:127.0.0.1": "loopback (inside ::ffff:7f00:1)",
           "::ffff:10.0.0.1": "private (inside ::ffff:a00:1)", "224.0.0.1": "multicast", "ff02::1": "multicast",
           "100.64.0.1": "non-public", "240.0.0.1": "private", "2002:a00:1::": "private (inside 2002:a00:1::)",
           "fec0::1": "site-local"}


@pytest.mark.parametrize("address", PRIVATE)
def test_a_resolver_that_answers_private_addresses_is_refused_before_connecting(engine, server, address):
    policy = AddressPolicy(resolver=lambda host, port: [address])
    report = run(engine, [source("ssrf", server.url("/fda-press.rss.xml", "feeds.example.org"))], policy=policy)
    message = report.results[0].message
    assert report.results[0].outcome == "failed"
    assert message.startswith("refused: 'feeds.example.org' resolves to "), message
    assert f", a {PRIVATE[address]} address" in message, message
    assert server.hits["/fda-press.rss.xml"] == 0


def test_allow_private_lets_tests_reach_loopback_and_connects_to_the_checked_address(engine, server):
    # The system resolver has never heard of feeds.example.org on this machine: a second resolution would fail.
    policy = AddressPolicy(allow_private=True, resolver=resolver)
    report = run(engine, [source("press", server.url("/fda-press.rss.xml", "feeds.example.org"))], policy=policy)
    assert report.results[0].outcome == "fetched" and report.results[0].new == 2
    assert server.requests[0][1]["host"] == f"feeds.example.org:{server.port}"


def test_retry_after_and_backoff_hold_a_failing_source_back(engine, server):
    busy = source("busy", server.url("/busy.xml", "feeds.example.org"))
    first = run(engine, [busy])
    assert "asked us to wait 60 min" in first.results[0].message
    with engine.connect() as conn:
        assert inbox.all_health(conn)["busy"].next_try_at == AT + timedelta(hours=1)
    later = run(engine, [busy], at=AT + timedelta(minutes=30))
    assert later.results[0].outcome == "waiting" and server.hits["/busy.xml"] == 1
    assert run(engine, [busy], at=AT + timedelta(minutes=30), force=True).results[0].outcome == "failed"
    assert server.hits["/busy.xml"] == 2

    gone = source("gone", server.url("/missing.xml", "feeds.example.org"))
    waits = []
    at = AT
    for _ in range(4):
        result = run(engine, [gone], at=at).results[0]
        assert result.outcome == "failed" and "404" in result.message
        with engine.connect() as conn:
            h = inbox.all_health(conn)["gone"]
        waits.append((h.next_try_at - at) if h.next_try_at else timedelta(0))
        at = h.next_try_at or at + timedelta(hours=1)
    assert waits == [timedelta(0), timedelta(hours=2), timedelta(hours=4), timedelta(hours=8)]


def test_candidates_nobody_acted_on_are_dropped_after_90_days(engine, server):
    run(engine, good_sources(server))
    with engine.begin() as conn:
        keep = inbox.candidates(conn)[0].id
        inbox.dismiss(conn, keep, at=AT)
    server.files.clear()  # nothing new out there
    report = run(engine, [], at=AT + timedelta(days=91))
    assert report.dropped == 2
    with engine.connect() as conn:
        assert inbox.candidates(conn, states=("new", "dismissed")) == [inbox.get(conn, keep)]
        actions = [r.action for r in conn.execute(select(curation_actions).order_by(curation_actions.c.id))]
    assert actions == ["fetched", "fetched", "fetched", "dismissed", "dropped"]


def test_an_unexpected_error_in_one_source_leaves_the_others(engine, server, monkeypatch):
    from pipeline.curation import run as run_module

    real = run_module.parse_feed

    def explode(body, *, base_url):
        if "blog" in base_url:
            raise RuntimeError("a bug")
        return real(body, base_url=base_url)

    monkeypatch.setattr(run_module, "parse_feed", explode)
    report = run(engine, good_sources(server))
    assert [r.outcome for r in report.results] == ["fetched", "failed", "fetched"]
    assert "unexpected error (RuntimeError)" in report.results[1].message
