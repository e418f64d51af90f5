"""Web pages that the feeds link to: one per live article, a withdrawn page, and the index."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup

from pipeline.content.checks import next_review_due
from pipeline.content.model import Article, Library
from pipeline.feeds.model import ALL, Site, feed_links, long_date, utc

_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(data: object) -> Markup:
    """JSON that is safe inside <script>: no '<', '>' or '&' can appear, so '</script>' cannot end it."""
    return Markup(json.dumps(data, ensure_ascii=False, sort_keys=True).translate(_JSON_ESCAPES))


def environment(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


class Pages:
    def __init__(self, env: jinja2.Environment, *, site: Site, library: Library, css_version: str):
        self.site = site
        self.library = library
        self._titles = {t.id: t for t in library.topics}
        self._article = env.get_template("web/article.html.j2")
        self._index = env.get_template("web/index.html.j2")
        self._withdrawn = env.get_template("web/withdrawn.html.j2")
        self._listing = env.get_template("web/articles.html.j2")
        self._common = {"site": site, "site_feeds": feed_links(site, ALL), "css_version": css_version}

    def json_ld(self, a: Article) -> dict:
        data = {
            "@context": "https://schema.org",
            "@type": "MedicalWebPage",
            "url": self.site.article_url(a.slug),
            "headline": a.title,
            "description": a.summary,
            "inLanguage": "en",
            "datePublished": utc(a.publish_at).isoformat(),
            "dateModified": utc(a.modified).isoformat(),
            "about": [{"@type": "Thing", "name": self._titles[t].title} for t in a.topics if t in self._titles],
            "citation": [{"@type": "CreativeWork", "name": s.title, "url": s.url} for s in a.sources],
        }
        if a.reviewed_on:
            data["lastReviewed"] = a.reviewed_on.isoformat()
        if a.reviewed_by:
            data["reviewedBy"] = {"@type": "Person", "name": a.reviewed_by}
        if a.author:
            data["author"] = {"@type": "Person", "name": a.author}
        return data

    def article(self, a: Article, body_html: str) -> str:
        due = next_review_due(a.reviewed_on) if a.reviewed_on else None
        updated = a.modified if a.modified != a.publish_at else None
        return self._article.render(
            **self._common, root="../", article=a, url=self.site.article_url(a.slug),
            body=Markup(body_html), json_ld=script_json(self.json_ld(a)),
            topics=[self._titles[t] for t in a.topics if t in self._titles],
            reviewed_on=long_date(a.reviewed_on) if a.reviewed_on else "",
            review_due=due, review_due_text=long_date(due) if due else "",
            published=long_date(a.publish_at.date()), published_iso=a.publish_at.isoformat(),
            updated=long_date(updated.date()) if updated else None,
            updated_iso=updated.isoformat() if updated else None,
        )

    def withdrawn(self) -> str:
        return self._withdrawn.render(**self._common, root="../")

    def index(self, latest: Sequence[Article], *, total: int, archive: bool = False) -> str:
        topics = [{"id": t.id, "title": t.title, "description": t.description,
                   "feeds": feed_links(self.site, t.id)} for t in self.library.topics]
        return self._index.render(**self._common, root="", latest=latest, topics=topics, total=total, archive=archive)

    def listing(self, live: Sequence[Article]) -> str:
        """Every live article by topic, so nothing is reachable only through feeds and emails."""
        topics = []
        for t in self.library.topics:
            items = [{"slug": a.slug, "title": a.title, "date": long_date(a.publish_at.date())}
                     for a in live if t.id in a.topics]
            if items:
                topics.append({"id": t.id, "title": t.title, "sensitive": t.sensitive, "articles": items})
        return self._listing.render(**self._common, root="", topics=topics)
