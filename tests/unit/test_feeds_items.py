from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from pipeline.content.model import Article, Library, Source, Topic
from pipeline.feeds.model import EMPTY_FEED_UPDATED, Site, content_html, feed_spec, select_feeds

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TOPICS = (Topic(id="a", title="Topic A", description="About A."), Topic(id="b", title="Topic B", description="About B."))
SITE = Site.make("https://digest.example.org/", "MBC Digest")


def art(slug: str, minutes_ago: int, topics=("a",), **kw) -> Article:
    base = dict(slug=slug, title=slug.title(), summary="S.", topics=topics, status="approved",
                publish_at=AT - timedelta(minutes=minutes_ago), sources=(Source(title="T", url="https://example.org/"),),
                reviewed_by="Dr. R", reviewed_on=date(2026, 11, 1), body="Body.")
    base.update(kw)
    return Article(**base)


def test_site_url_is_normalised_and_ids_depend_on_the_slug_only():
    assert SITE.url == "https://digest.example.org"
    assert SITE.article_url("x") == "https://digest.example.org/articles/x.html"
    assert SITE.feed_url("all", "atom") == "https://digest.example.org/feeds/all.atom.xml"
    assert SITE.article_id("x") == f"urn:uuid:{uuid.uuid5(SITE.id_namespace, 'article:x')}"
    # The site's address is no part of an id; the installation's namespace is.
    assert Site.make("http://127.0.0.1:8000", "Other").article_id("x") == SITE.article_id("x")
    other = uuid.uuid4()
    assert Site.make("https://digest.example.org", "MBC Digest", other).article_id("x") != SITE.article_id("x")
    assert SITE.feed_id("all") != SITE.article_id("all")
    one = feed_spec("all", [art("x", 5)], site=SITE, library=Library(topics=TOPICS, articles=()), render=str)
    two = feed_spec("all", [art("x", 5, title="Another title")], site=SITE,
                    library=Library(topics=TOPICS, articles=()), render=str)
    assert one.entries[0].id == two.entries[0].id and one.entries[0].title != two.entries[0].title


def test_select_feeds_orders_newest_first_with_slug_tie_break_and_caps():
    same = AT - timedelta(minutes=10)
    arts = (art("old", 100), art("tie-a", 0, publish_at=same), art("tie-b", 0, publish_at=same, topics=("b",)),
            art("new", 1, topics=("a", "b")), art("later", -5))
    lib = Library(topics=TOPICS, articles=arts)
    feeds = dict(select_feeds(lib, lib.live(AT), max_items=None))
    assert list(feeds) == ["all", "a", "b"]
    assert [a.slug for a in feeds["all"]] == ["new", "tie-b", "tie-a", "old"]
    assert [a.slug for a in feeds["a"]] == ["new", "tie-a", "old"]
    assert [a.slug for a in feeds["b"]] == ["new", "tie-b"]
    capped = dict(select_feeds(lib, lib.live(AT), max_items=2))
    assert [a.slug for a in capped["all"]] == ["new", "tie-b"]


def test_feed_updated_is_the_newest_modification_or_a_fixed_epoch():
    lib = Library(topics=TOPICS, articles=())
    edited = art("e", 500, updated_at=AT - timedelta(minutes=1))
    spec = feed_spec("a", [art("n", 10), edited], site=SITE, library=lib, render=str)
    assert spec.updated == AT - timedelta(minutes=1)
    assert feed_spec("b", [], site=SITE, library=lib, render=str).updated == EMPTY_FEED_UPDATED
    assert spec.title == "MBC Digest: Topic A" and spec.description == "About A."


def test_content_html_escapes_everything_but_the_sanitized_body():
    a = art("x", 1, reviewed_by="Dr. <i>X</i> & Y", link="https://example.com/?a=1&b=<2>",
            sources=(Source(title='Q&A "<b>"', url="https://example.org/?x=1&y=2"),))
    html = str(content_html(a, "<p>safe body</p>"))
    assert html.startswith("<p>safe body</p>")
    assert "Dr. &lt;i&gt;X&lt;/i&gt; &amp; Y on November 1, 2026" in html
    assert 'href="https://example.org/?x=1&amp;y=2">Q&amp;A &#34;&lt;b&gt;&#34;</a>' in html
    assert "https://example.com/?a=1&amp;b=&lt;2&gt;" in html and "<2>" not in html
