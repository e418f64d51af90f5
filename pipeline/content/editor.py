"""Editor actions on article files: create a draft, queue an approved article. Bodies are never touched."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

from pipeline.atomic_files import write_atomic
from pipeline.content import frontmatter, placeholders
from pipeline.content.loader import SLUG_RE, load_topics, parse_article
from pipeline.errors import ContentError, InputError, NotFound, Problem

_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")

NEW_TEMPLATE = """---
title: "{title}"
summary: "{summary}"
topics: [{topics}]
status: draft
publish_at: {publish_at}
author: "{author}"
reviewed_by:
reviewed_on:
sources:
  - title: "{source_title}"
    url: "{source_url}"
---
{body_first}

{body_second}
"""


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug[:80].rstrip("-") or "untitled"


def new_article(content_dir: Path, *, title: str, topics: list[str], at: datetime, author: str = "",
                slug: str | None = None) -> Path:
    slug = slug or slugify(title)
    if not SLUG_RE.match(slug):
        raise InputError(f"--slug: {slug!r} must be lowercase words joined by hyphens")
    known, _ = load_topics(content_dir / "topics.yaml")
    ids = {t.id for t in known}
    unknown = [t for t in topics if t not in ids]
    if unknown:
        raise InputError(f"--topics: unknown {', '.join(unknown)}; use ids from {content_dir / 'topics.yaml'}")
    path = content_dir / f"{slug}.md"
    if path.exists():
        raise InputError(f"{path}: already exists; choose another --slug")
    text = NEW_TEMPLATE.format(title=title.replace('"', "'"), topics=", ".join(topics), author=author.replace('"', "'"),
                               publish_at=at.replace(microsecond=0).isoformat(), summary=placeholders.SUMMARY,
                               source_title=placeholders.SOURCE_TITLE, source_url=placeholders.SOURCE_URL,
                               body_first=placeholders.BODY_LINES[0], body_second=placeholders.BODY_LINES[1])
    write_atomic(path, text, skip_unchanged=False)
    return path


def set_fields(text: str, values: dict[str, str]) -> str:
    lines, start, end = frontmatter.split(text)
    pending = dict(values)
    for i in range(start, end):
        m = _TOP_KEY.match(lines[i])
        if m and m.group(1) in pending:
            newline = "\r\n" if lines[i].endswith("\r\n") else "\n"
            lines[i] = f"{m.group(1)}: {pending.pop(m.group(1))}{newline}"
    extra = [f"{k}: {v}\n" for k, v in pending.items()]
    return "".join(lines[:end] + extra + lines[end:])


def queue_article(content_dir: Path, slug: str, *, at: datetime, review: tuple[str, date] | None = None) -> Path:
    """Approve and schedule an article for ``at``. Refuses one without a medical review and sources.
    ``review``: (reviewer as shown, date) of a reviewer account's approval, written into the review fields."""
    path = content_dir / f"{slug}.md"
    if not SLUG_RE.match(slug) or not path.is_file():
        raise NotFound(f"{path}: no such article; see 'pipeline content list'")
    text = path.read_text(encoding="utf-8")
    try:
        doc = frontmatter.parse(text)
    except frontmatter.FrontMatterError as exc:
        raise ContentError([Problem(path=str(path), line=exc.line, field="front matter", message=str(exc))]) from None
    if doc.data.get("status") == "retracted":
        raise InputError(f"{path}: is retracted; set its status to review and have it re-reviewed first")
    values = {"status": "approved", "publish_at": at.isoformat()}
    if review is not None:
        values.update(reviewed_by=json.dumps(review[0], ensure_ascii=False), reviewed_on=review[1].isoformat())
    new_text = set_fields(text, values)
    topics, _ = load_topics(content_dir / "topics.yaml")
    article, problems = parse_article(new_text, slug=slug, path=str(path), topic_ids=frozenset(t.id for t in topics))
    errors = [p for p in problems if p.severity == "error"]
    if article is None or errors:
        raise ContentError([Problem(path=p.path, line=p.line, field=p.field,
                                    message=p.message + " (not queued)") for p in errors])
    write_atomic(path, new_text)
    return path
