"""build_site: plan the feeds and pages for the live articles, then write only what changed.

A manifest (public_dir/.build-manifest.json) keeps a fingerprint of every input. When nothing changed the
build stops after hashing; when one article changed only its page and the feeds that hold it are redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.atomic_files import write_atomic
from pipeline.content.model import Article, Library
from pipeline.content.render import body_html
from pipeline.errors import ConfigError
from pipeline.feeds import jsonfeed, rss_atom
from pipeline.feeds.bodies import PageJob, write_pages
from pipeline.feeds.model import FORMATS, Entry, Site, feed_spec, select_feeds
from pipeline.feeds.pages import Pages, environment

# Bump when the code changes its output, so the next build redoes everything.
CODE_VERSION = "feeds-4"
MANIFEST = ".build-manifest.json"
MAX_FEED_ITEMS = 50
LATEST_ON_INDEX = 30


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    articles_live: int
    feeds_written: int
    pages_written: int  # article pages and the index
    withdrawn_written: int  # pages of articles that are no longer live
    unchanged: int  # files left alone because their content was already right
    skipped_fast: bool  # nothing changed since the last build: no file was even compared

    @property
    def files_written(self) -> int:
        return self.feeds_written + self.pages_written + self.withdrawn_written

    def summary(self) -> str:
        if self.skipped_fast:
            return f"{self.articles_live} live articles; nothing changed since the last build"
        return (f"{self.articles_live} live articles; wrote {self.feeds_written} feeds, {self.pages_written} pages, "
                f"{self.withdrawn_written} withdrawn notices; {self.unchanged} files already up to date")


def _h(*parts: str) -> str:
    return hashlib.blake2b("\x1e".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _article_key(a: Article) -> str:
    return _h(a.slug, a.title, a.summary, "\x1f".join(a.topics), a.status, a.publish_at.isoformat(),
              a.updated_at.isoformat() if a.updated_at else "", a.reviewed_by or "",
              a.reviewed_on.isoformat() if a.reviewed_on else "", a.author or "", a.link or "", a.origin or "",
              "\x1f".join(a.content_notes), "\x1f".join(f"{s.title}\x1d{s.url}" for s in a.sources), a.body,
              "overdue" if a.review_overdue else "")


def _templates_key(web_dir: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in web_dir.rglob("*") if p.is_file()):
        h.update(path.relative_to(web_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _read_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("code") == CODE_VERSION else {}


def _listing(directory: Path) -> set[str]:
    try:
        with os.scandir(directory) as it:
            return {e.name for e in it if e.is_file()}
    except FileNotFoundError:
        return set()


def build_site(library: Library, *, at: datetime, public_dir: Path, site_url: str, templates_dir: Path,
               site_title: str = "MBC Digest", max_feed_items: int | None = MAX_FEED_ITEMS,
               workers: int | None = None, id_namespace: uuid.UUID | None = None) -> BuildReport:
    """Write every feed (site-wide and per topic, RSS, Atom and JSON Feed), the article pages and the index.

    Only articles live at ``at`` appear. Output depends on the inputs alone (never on the clock), so an
    unchanged library gives byte-identical files, and unchanged files are not rewritten.
    ``workers``: processes for rendering many pages (default: the CPU count, at most 8; 1 = in-process).
    ``id_namespace``: the installation's namespace for feed and item ids (store.site_keys.feed_id_namespace).
    """
    public_dir = Path(public_dir)
    templates_dir = Path(templates_dir)
    if not (templates_dir / "web" / "static" / "site.css").is_file():
        raise ConfigError(f"PIPELINE_TEMPLATES_DIR: {templates_dir} holds no web templates (web/static/site.css is "
                          "missing); point it at the project's templates folder")
    site = Site.make(site_url, site_title, id_namespace)
    live = library.live(at)

    css = (templates_dir / "web" / "static" / "site.css").read_bytes()
    topics_repr = "\x1f".join(f"{t.id}\x1d{t.title}\x1d{t.description}\x1d{t.sensitive}" for t in library.topics)
    # The home page links the digest archive once a digest has written it (public/digests/index.html).
    has_archive = (public_dir / "digests" / "index.html").is_file()
    global_key = _h(CODE_VERSION, site.url, site.title, str(site.id_namespace), str(max_feed_items), topics_repr,
                    _templates_key(templates_dir / "web"), f"archive={has_archive}")
    article_keys = {a.slug: _article_key(a) for a in live}
    fingerprint = _h(global_key, *(f"{slug}\x1d{key}" for slug, key in article_keys.items()))

    manifest_path = public_dir / MANIFEST
    old = _read_manifest(manifest_path)
    feed_names = ["all", *library.topic_ids]
    feed_files = {f"{name}.{ext}" for name in feed_names for ext, _, _ in FORMATS.values()}
    page_files = {f"{slug}.html" for slug in article_keys}
    articles_dir = public_dir / "articles"
    existing_pages = _listing(articles_dir)
    existing_feeds = _listing(public_dir / "feeds")

    if (old.get("fingerprint") == fingerprint and feed_files <= existing_feeds and page_files <= existing_pages
            and (public_dir / "index.html").is_file() and (public_dir / "articles.html").is_file() and (public_dir / "static" / "site.css").is_file()):
        return BuildReport(articles_live=len(live), feeds_written=0, pages_written=0, withdrawn_written=0,
                           unchanged=0, skipped_fast=True)

    same_global = old.get("global") == global_key
    old_pages: dict = old.get("pages", {}) if same_global else {}
    old_feeds: dict = old.get("feeds", {}) if same_global else {}

    # Plan: which pages and feeds need their content built at all.
    page_todo = [a for a in live if old_pages.get(a.slug) != article_keys[a.slug] or f"{a.slug}.html" not in existing_pages]
    feed_keys: dict[str, str] = {}
    feed_todo: list[tuple[str, list[Article]]] = []
    for name, articles in select_feeds(library, live, max_items=max_feed_items):
        feed_keys[name] = _h(global_key, *(article_keys[a.slug] for a in articles))
        files_there = all(f"{name}.{ext}" in existing_feeds for ext, _, _ in FORMATS.values())
        if old_feeds.get(name) != feed_keys[name] or not files_there:
            feed_todo.append((name, articles))

    # Act. Without a manifest the next build compares every file, so a crash part-way can leave nothing stale.
    manifest_path.unlink(missing_ok=True)
    written = {"feeds": 0, "pages": 0, "withdrawn": 0, "unchanged": 0}

    def put(path: Path, data: bytes | str, kind: str) -> None:
        written[kind if write_atomic(path, data) else "unchanged"] += 1

    css_version = _h(css.hex())[:10]
    put(public_dir / "static" / "site.css", css, "pages")
    job = PageJob(templates_dir=templates_dir, site=site, library=Library(topics=library.topics, articles=()),
                  css_version=css_version, articles_dir=articles_dir)
    in_feeds = frozenset(a.slug for _, arts in feed_todo for a in arts)
    changed, html_by_slug = write_pages(job, page_todo, keep_html=in_feeds, workers=workers)
    written["pages"] += changed
    written["unchanged"] += len(live) - changed

    rendered = {a.body: html_by_slug[a.slug] for a in page_todo if a.slug in html_by_slug}

    def render(body: str) -> str:
        return rendered[body] if body in rendered else body_html(body)

    pages = Pages(environment(templates_dir), site=site, library=library, css_version=css_version)
    live_pages = page_files
    gone = sorted(name for name in existing_pages if name.endswith(".html") and name not in live_pages)
    if gone:
        withdrawn = pages.withdrawn()
        for name in gone:
            put(articles_dir / name, withdrawn, "withdrawn")

    entries: dict[str, Entry] = {}
    entry_cache = rss_atom.EntryCache()
    for name, articles in feed_todo:
        spec = feed_spec(name, articles, site=site, library=library, render=render, entries=entries)
        feeds_dir = public_dir / "feeds"
        put(feeds_dir / f"{name}.rss.xml", rss_atom.rss_bytes(spec, entry_cache), "feeds")
        put(feeds_dir / f"{name}.atom.xml", rss_atom.atom_bytes(spec, entry_cache), "feeds")
        put(feeds_dir / f"{name}.json", jsonfeed.json_bytes(spec), "feeds")
    written["unchanged"] += 3 * (len(feed_names) - len(feed_todo))

    put(public_dir / "index.html", pages.index(live[:LATEST_ON_INDEX], total=len(live), archive=has_archive), "pages")
    put(public_dir / "articles.html", pages.listing(live), "pages")

    manifest = {"code": CODE_VERSION, "fingerprint": fingerprint, "global": global_key,
                "pages": {slug: article_keys[slug] for slug in sorted(article_keys)}, "feeds": feed_keys}
    write_atomic(manifest_path, json.dumps(manifest, indent=0, sort_keys=True) + "\n")
    return BuildReport(articles_live=len(live), feeds_written=written["feeds"], pages_written=written["pages"],
                       withdrawn_written=written["withdrawn"], unchanged=written["unchanged"], skipped_fast=False)
