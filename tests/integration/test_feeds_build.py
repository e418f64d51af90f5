"""Build the fixture site for real and read every output back with feedparser, json and the file system."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from pipeline.content.loader import load_library
from pipeline.content.model import Library
from pipeline.feeds import build_site
from pipeline.feeds.model import Site

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "content"
GOLDEN = ROOT / "tests" / "golden" / "feeds"
TEMPLATES = ROOT / "templates"
AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SITE = "https://digest.example.org"
LIVE_NEWEST_FIRST = ["support-groups-near-you", "finding-a-clinical-trial", "palliative-care-is-not-giving-up",
                     "managing-fatigue"]
NEVER = ["new-treatment-approved", "planning-ahead-draft", "retracted-old-advice"]
TOPIC_IDS = ["treatment-progress", "clinical-trials", "symptom-management", "quality-of-life", "palliative-care",
             "hospice-end-of-life", "support-resources"]
FEEDS = ["all", *TOPIC_IDS]


@pytest.fixture(scope="module")
def library() -> Library:
    lib, problems = load_library(FIXTURE)
    assert [p for p in problems if p.severity == "error"] == []
    return lib


def build(library: Library, public: Path, at: datetime = AT):
    return build_site(library, at=at, public_dir=public, site_url=SITE, templates_dir=TEMPLATES)


@pytest.fixture(scope="module")
def site(library, tmp_path_factory) -> Path:
    public = tmp_path_factory.mktemp("public")
    report = build(library, public)
    assert report.feeds_written == 3 * len(FEEDS)
    return public


_SLUG_BY_ID = {Site.make(SITE, "MBC Digest").article_id(p.stem): p.stem for p in FIXTURE.glob("*.md")}


def slug_of(entry_id: str) -> str:
    assert entry_id.startswith("urn:uuid:"), entry_id
    return _SLUG_BY_ID[entry_id]


def expected_slugs(library: Library, name: str) -> list[str]:
    return [a.slug for a in library.live(AT) if name == "all" or name in a.topics]


def test_fixture_has_the_mix_the_tests_rely_on(library):
    assert [a.slug for a in library.live(AT)] == LIVE_NEWEST_FIRST
    by_slug = {a.slug: a for a in library.articles}
    assert by_slug["new-treatment-approved"].is_queued(AT)
    assert by_slug["planning-ahead-draft"].status == "draft"
    assert by_slug["retracted-old-advice"].status == "retracted"


@pytest.mark.parametrize("name", FEEDS)
@pytest.mark.parametrize("ext", ["rss.xml", "atom.xml"])
def test_xml_feeds_parse_cleanly_with_exactly_the_live_articles_newest_first(site, library, name, ext):
    parsed = feedparser.parse((site / "feeds" / f"{name}.{ext}").read_bytes())
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert [slug_of(e.id) for e in parsed.entries] == expected_slugs(library, name)
    self_links = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert self_links == [f"{SITE}/feeds/{name}.{ext}"]
    assert parsed.feed.language == "en"
    expected_title = "MBC Digest" if name == "all" else f"MBC Digest: {library.topic(name).title}"
    assert parsed.feed.title == expected_title + (" (RSS)" if ext == "rss.xml" else " (Atom)")
    if name != "all":
        assert parsed.feed.subtitle == library.topic(name).description


@pytest.mark.parametrize("ext", ["rss.xml", "atom.xml"])
def test_entries_carry_link_summary_categories_dates_and_review(site, library, ext):
    parsed = feedparser.parse((site / "feeds" / f"all.{ext}").read_bytes())
    entry = next(e for e in parsed.entries if slug_of(e.id) == "palliative-care-is-not-giving-up")
    article = next(a for a in library.articles if a.slug == "palliative-care-is-not-giving-up")
    assert entry.link == f"{SITE}/articles/palliative-care-is-not-giving-up.html"
    assert entry.title == article.title
    assert entry.summary == article.summary
    labels = {t.get("label") or t.term for t in entry.tags}
    assert {"Palliative care", "Quality of life and emotional support"} <= labels | {t.term for t in entry.tags}
    assert entry.published_parsed[:5] == (2026, 11, 2, 14, 0)
    content = entry.content[0].value
    assert "Medically reviewed by Test Reviewer B, MD (palliative medicine) on November 18, 2026." in content
    assert 'href="https://example.com/team?a=1&amp;b=2"' in content
    assert "Palliative care &amp; your team" in content
    assert entry.author == "Test Author"
    if ext == "atom.xml":
        assert entry.updated_parsed[:5] == (2026, 11, 20, 15, 30)
        assert {t.term for t in entry.tags} == {"palliative-care", "quality-of-life"}


def test_external_link_is_mentioned_but_the_item_links_our_page(site):
    parsed = feedparser.parse((site / "feeds" / "all.atom.xml").read_bytes())
    entry = next(e for e in parsed.entries if slug_of(e.id) == "managing-fatigue")
    assert entry.link == f"{SITE}/articles/managing-fatigue.html"
    assert "https://example.com/fatigue-guide" in entry.content[0].value
    assert [link.href for link in entry.links] == [f"{SITE}/articles/managing-fatigue.html"]
    item = next(i for i in json.loads((site / "feeds" / "all.json").read_text())["items"]
                if slug_of(i["id"]) == "managing-fatigue")
    assert item["external_url"] == "https://example.com/fatigue-guide"
    assert item["url"] == f"{SITE}/articles/managing-fatigue.html"


def test_feed_updated_comes_from_the_content_not_the_clock(site):
    atom = feedparser.parse((site / "feeds" / "all.atom.xml").read_bytes())
    assert atom.feed.updated == "2026-11-25T12:00:00+00:00"  # the newest item's modified time
    rss = feedparser.parse((site / "feeds" / "palliative-care.rss.xml").read_bytes())
    assert rss.feed.updated == "Fri, 20 Nov 2026 15:30:00 +0000"  # the item's updated_at, not its publish_at
    empty = feedparser.parse((site / "feeds" / "hospice-end-of-life.atom.xml").read_bytes())
    assert empty.bozo == 0 and empty.entries == []
    assert empty.feed.updated == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize("name", FEEDS)
def test_json_feeds_are_structurally_valid(site, library, name):
    data = json.loads((site / "feeds" / f"{name}.json").read_bytes())
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert data["home_page_url"] == f"{SITE}/"
    assert data["feed_url"] == f"{SITE}/feeds/{name}.json"
    assert data["language"] == "en"
    assert isinstance(data["title"], str) and data["title"]
    assert [slug_of(i["id"]) for i in data["items"]] == expected_slugs(library, name)
    for item in data["items"]:
        assert {"id", "url", "title", "summary", "content_html", "date_published", "date_modified", "tags"} <= item.keys()
        for key in ("id", "url", "title", "summary", "content_html", "date_published", "date_modified"):
            assert isinstance(item[key], str) and item[key], key
        assert datetime.fromisoformat(item["date_published"]) <= datetime.fromisoformat(item["date_modified"])
        assert all(isinstance(t, str) for t in item["tags"])
        assert item["url"] == f"{SITE}/articles/{slug_of(item['id'])}.html"
        if "authors" in item:
            assert all(isinstance(a["name"], str) for a in item["authors"])


def test_nothing_unpublished_appears_anywhere(site):
    for path in site.rglob("*"):
        if path.is_file() and path.suffix in (".xml", ".json", ".html"):
            text = path.read_text(encoding="utf-8")
            for slug in NEVER:
                assert slug not in text, (path, slug)
            assert "must never appear" not in text
    assert sorted(p.stem for p in (site / "articles").glob("*.html")) == sorted(LIVE_NEWEST_FIRST)


def test_index_lists_every_feed_with_autodiscovery_and_the_latest_articles(site):
    html = (site / "index.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in html
    for mt, ext in (("application/rss+xml", "rss.xml"), ("application/atom+xml", "atom.xml"),
                    ("application/feed+json", "json")):
        assert re.search(rf'<link rel="alternate" type="{re.escape(mt)}"[^>]*href="{SITE}/feeds/all\.{ext}"', html)
        for name in FEEDS:
            assert f'href="{SITE}/feeds/{name}.{ext}"' in html
    positions = [html.index(f'href="articles/{slug}.html"') for slug in LIVE_NEWEST_FIRST]
    assert positions == sorted(positions)
    assert "feed reader" in html


def test_article_page_has_review_details_sources_and_safe_json_ld(site):
    html = (site / "articles" / "palliative-care-is-not-giving-up.html").read_text(encoding="utf-8")
    assert "Written by" in html and "Test Author" in html
    assert "Reviewed by Test Reviewer B, MD (palliative medicine) on <time datetime=\"2026-11-18\">November 18, 2026" in html
    assert "Next review due" in html and "November 18, 2027" in html
    assert "This information supports, and never replaces, the advice of your care team." in html
    assert '<a href="https://example.com/team?a=1&amp;b=2" rel="noopener noreferrer">Palliative care &amp; your team</a>' in html
    assert 'rel="alternate" type="application/atom+xml"' in html
    assert 'static/site.css' in html
    raw = re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S).group(1)
    assert "&" not in raw and "<" not in raw
    data = json.loads(raw)
    assert data["@type"] == "MedicalWebPage"
    assert data["lastReviewed"] == "2026-11-18"
    assert data["reviewedBy"]["name"] == "Test Reviewer B, MD (palliative medicine)"
    assert data["datePublished"].startswith("2026-11-02") and data["dateModified"].startswith("2026-11-20")
    assert {t["name"] for t in data["about"]} == {"Palliative care", "Quality of life and emotional support"}
    assert (site / "static" / "site.css").read_text().count("{") > 5


def _golden_names() -> list[str]:
    return [f"{name}.{ext}" for name in ("all", "palliative-care") for ext in ("rss.xml", "atom.xml", "json")]


@pytest.mark.parametrize("filename", _golden_names())
def test_feeds_match_golden_files_byte_for_byte(site, filename):
    """Regenerate with UPDATE_GOLDEN=1 after an intended change, and review the diff."""
    produced = (site / "feeds" / filename).read_bytes()
    golden = GOLDEN / filename
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(produced)
    assert golden.is_file(), f"missing {golden}; run with UPDATE_GOLDEN=1 to create it"
    assert produced == golden.read_bytes(), f"{filename} differs from {golden}; if intended, rerun with UPDATE_GOLDEN=1"


def test_second_identical_build_takes_the_fast_path_and_touches_nothing(library, tmp_path):
    first = build(library, tmp_path)
    # Four article pages, plus index.html, articles.html and the stylesheet.
    assert not first.skipped_fast and first.feeds_written == 24 and first.pages_written == 4 + 3
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    second = build(library, tmp_path)
    assert second.skipped_fast and second.files_written == 0
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()} == before


def test_slow_path_rewrites_nothing_when_only_the_manifest_is_lost(library, tmp_path):
    build(library, tmp_path)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.*ml") if p.is_file()}
    (tmp_path / ".build-manifest.json").unlink()
    report = build(library, tmp_path)
    assert not report.skipped_fast and report.files_written == 0 and report.unchanged > 24
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.*ml") if p.is_file()} == before


def test_a_deleted_output_file_is_restored(library, tmp_path):
    build(library, tmp_path)
    (tmp_path / "feeds" / "clinical-trials.json").unlink()
    (tmp_path / "articles" / "managing-fatigue.html").unlink()
    report = build(library, tmp_path)
    assert not report.skipped_fast
    assert (tmp_path / "feeds" / "clinical-trials.json").is_file()
    assert (tmp_path / "articles" / "managing-fatigue.html").is_file()


def test_retracted_article_leaves_feeds_and_its_page_becomes_a_withdrawn_notice(library, tmp_path):
    build(library, tmp_path)
    page = tmp_path / "articles" / "finding-a-clinical-trial.html"
    assert "How to find a clinical trial" in page.read_text()
    retracted = Library(topics=library.topics, articles=tuple(
        a.evolve(status="retracted") if a.slug == "finding-a-clinical-trial" else a for a in library.articles))
    report = build(retracted, tmp_path)
    assert report.withdrawn_written == 1
    for name in ("all", "clinical-trials"):
        for ext in ("rss.xml", "atom.xml"):
            parsed = feedparser.parse((tmp_path / "feeds" / f"{name}.{ext}").read_bytes())
            assert parsed.bozo == 0
            assert all(not slug_of(e.id) == "finding-a-clinical-trial" for e in parsed.entries)
        assert "finding-a-clinical-trial" not in (tmp_path / "feeds" / f"{name}.json").read_text()
    text = page.read_text()
    assert "This article has been withdrawn" in text and "How to find a clinical trial" not in text
    assert '<meta name="robots" content="noindex">' in text
    assert "finding-a-clinical-trial" not in (tmp_path / "index.html").read_text()
    again = build(retracted, tmp_path)
    assert again.skipped_fast


def test_queued_article_appears_once_its_time_comes(library, tmp_path):
    later = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    build(library, tmp_path, at=later)
    parsed = feedparser.parse((tmp_path / "feeds" / "all.atom.xml").read_bytes())
    assert slug_of(parsed.entries[0].id) == "new-treatment-approved"
    assert (tmp_path / "articles" / "new-treatment-approved.html").is_file()


def test_ids_do_not_change_when_only_the_title_changes(library, tmp_path):
    build(library, tmp_path / "a")
    retitled = Library(topics=library.topics, articles=tuple(
        a.evolve(title=a.title + " (updated)") for a in library.articles))
    build(retitled, tmp_path / "b")
    for ext in ("rss.xml", "atom.xml"):
        a = feedparser.parse((tmp_path / "a" / "feeds" / f"all.{ext}").read_bytes()).entries
        b = feedparser.parse((tmp_path / "b" / "feeds" / f"all.{ext}").read_bytes()).entries
        assert [e.id for e in a] == [e.id for e in b]
        assert [e.title for e in a] != [e.title for e in b]
    ja = json.loads((tmp_path / "a" / "feeds" / "all.json").read_text())["items"]
    jb = json.loads((tmp_path / "b" / "feeds" / "all.json").read_text())["items"]
    assert [i["id"] for i in ja] == [i["id"] for i in jb]


def test_hostile_title_and_body_stay_well_formed_and_inert(library, tmp_path):
    hostile = Library(topics=library.topics, articles=tuple(
        a.evolve(title='Care & <script>alert("t")</script> "tips" ]]>',
                 body='Hello <script>alert("b")</script><img src=x onerror=alert(1)>\n\n<b onclick="x()">bold</b>'
                      ' </script><!-- -->',
                 reviewed_by="Dr. <b>Bold</b> & Co", author="A </script> B")
        if a.slug == "managing-fatigue" else a for a in library.articles))
    build(hostile, tmp_path)
    for name in ("all", "symptom-management"):
        for ext in ("rss.xml", "atom.xml"):
            raw = (tmp_path / "feeds" / f"{name}.{ext}").read_bytes()
            assert b"<script" not in raw and b"Care &amp; &lt;script&gt;alert" in raw
            parsed = feedparser.parse(raw)
            assert parsed.bozo == 0, parsed.get("bozo_exception")
            entry = next(e for e in parsed.entries if slug_of(e.id) == "managing-fatigue")
            assert "<script" not in entry.content[0].value and "onerror" not in entry.content[0].value
        item = next(i for i in json.loads((tmp_path / "feeds" / f"{name}.json").read_text())["items"]
                    if slug_of(i["id"]) == "managing-fatigue")
        assert item["title"] == 'Care & <script>alert("t")</script> "tips" ]]>'
        assert "<script" not in item["content_html"] and "onclick" not in item["content_html"]
        assert "Dr. &lt;b&gt;Bold&lt;/b&gt; &amp; Co" in item["content_html"]
    for page in (tmp_path / "articles" / "managing-fatigue.html", tmp_path / "index.html"):
        html = page.read_text()
        assert "<script>alert" not in html and "onerror" not in html and "onclick" not in html
        assert "</script> B" not in html
    html = (tmp_path / "articles" / "managing-fatigue.html").read_text()
    assert "Care &amp; &lt;script&gt;alert" in html
    raw = re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S).group(1)
    assert json.loads(raw)["author"]["name"] == "A </script> B"


def test_writes_are_atomic_and_leave_no_temp_files(library, tmp_path):
    build(library, tmp_path)
    edited = Library(topics=library.topics, articles=tuple(a.evolve(summary=a.summary + " More.")
                                                          for a in library.articles))
    build(edited, tmp_path)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_template_change_rebuilds_every_page(library, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    public = tmp_path / "public"
    build_site(library, at=AT, public_dir=public, site_url=SITE, templates_dir=templates)
    base = templates / "web" / "base.html.j2"
    base.write_text(base.read_text().replace("</footer>", "<p>Changed footer</p></footer>"))
    report = build_site(library, at=AT, public_dir=public, site_url=SITE, templates_dir=templates)
    assert report.pages_written == 4 + 2  # every article page, the index and the listing; the CSS is unchanged
    assert "Changed footer" in (public / "articles" / "managing-fatigue.html").read_text()


def test_feed_items_carry_the_content_note(tmp_path):
    library, _ = load_library(Path(__file__).resolve().parents[2] / "content")
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    build_site(library, at=at, public_dir=tmp_path, site_url="https://digest.example.org",
               templates_dir=Path(__file__).resolve().parents[2] / "templates", workers=1)
    parsed = feedparser.parse((tmp_path / "feeds" / "hospice-end-of-life.atom.xml").read_bytes())
    assert parsed.bozo == 0 and parsed.entries
    for entry in parsed.entries:
        assert entry.content[0].value.startswith("<p><em>Please note: this article talks about end-of-life.</em></p>")
    others = feedparser.parse((tmp_path / "feeds" / "symptom-management.atom.xml").read_bytes())
    assert others.entries and not any("Please note" in e.content[0].value for e in others.entries)


def test_listing_links_every_live_article_under_each_of_its_topics(library, tmp_path):
    build(library, tmp_path)
    html = (tmp_path / "articles.html").read_text()
    live = library.live(AT)
    assert live
    for article in live:
        assert html.count(f'href="articles/{article.slug}.html"') == len(article.topics)
    for article in library.articles:
        if article not in live:
            assert f"articles/{article.slug}.html" not in html
    assert 'href="articles.html"' in (tmp_path / "index.html").read_text()


def test_a_missing_templates_folder_is_a_setting_to_fix_not_a_traceback(library, tmp_path):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^PIPELINE_TEMPLATES_DIR: .*nothere holds no web templates"):
        build_site(library, at=AT, public_dir=tmp_path / "public", site_url="https://digest.example.org",
                   templates_dir=tmp_path / "nothere")
    assert not (tmp_path / "public").exists()
