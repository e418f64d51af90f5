"""The reviewed text of an article in one canonical form, and its SHA-256.

Covered: title, summary, body, topics, sources, link, origin (who published the original a linked item points to)
and content_notes. Not covered: publish_at, status, the review
fields, author and updated_at. The form ignores YAML formatting (quoting, flow or block lists, key order), line
endings and trailing whitespace, so only a change a reader could see makes a new revision.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pipeline.content.model import Article, Source

FIELDS = ("title", "summary", "body", "topics", "sources", "link", "content_notes")
# Covered only where set, so the texts recorded before it existed keep their hashes.
OPTIONAL = ("origin",)


@dataclass(frozen=True, kw_only=True)
class Revision:
    slug: str
    hash: str
    text: str  # canonical JSON

    @property
    def fields(self) -> dict:
        return json.loads(self.text)


def _clean(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def reviewed_fields(article: Article) -> dict:
    return {
        "title": _clean(article.title),
        "summary": _clean(article.summary),
        "body": _clean(article.body),
        "topics": list(article.topics),
        "sources": [{"title": _clean(s.title), "url": s.url.strip()} for s in article.sources],
        "link": article.link.strip() if article.link else None,
        "content_notes": [_clean(n) for n in article.content_notes],
        "origin": _clean(article.origin) if article.origin else None,
    }


def canonical_text(fields: dict) -> str:
    covered = {k: fields[k] for k in FIELDS}
    covered.update({k: fields[k] for k in OPTIONAL if fields.get(k) is not None})
    return json.dumps(covered, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def revision_of(article: Article) -> Revision:
    text = canonical_text(reviewed_fields(article))
    return Revision(slug=article.slug, hash=sha256(text), text=text)


def apply(article: Article, text: str) -> Article:
    """``article`` with its reviewed fields taken from a stored revision's text."""
    f = json.loads(text)
    return article.evolve(title=f["title"], summary=f["summary"], body=f["body"], topics=tuple(f["topics"]),
                          sources=tuple(Source(title=s["title"], url=s["url"]) for s in f["sources"]),
                          link=f["link"], origin=f.get("origin"), content_notes=tuple(f["content_notes"]))


def readable(text: str) -> list[str]:
    """The revision as lines a reviewer reads (for diffs)."""
    f = json.loads(text)
    lines = [f"title: {f['title']}", f"summary: {f['summary']}", f"topics: {', '.join(f['topics'])}"]
    if f["link"]:
        lines.append(f"link: {f['link']}")
    if f.get("origin"):
        lines.append(f"origin: {f['origin']}")
    if f["content_notes"]:
        lines.append(f"content notes: {', '.join(f['content_notes'])}")
    lines += [f"source: {s['title']} <{s['url']}>" for s in f["sources"]]
    return [*lines, "", *f["body"].split("\n")]
