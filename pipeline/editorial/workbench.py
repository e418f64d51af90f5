"""What the workbench does to an article, for a staff account: save a revision from form fields, submit it,
schedule it after approval, change its time, and retract it.

content/<slug>.md stays the article's file (git keeps its history; `pipeline content import` reads it), so each
save writes the file and records the revision under the staff account at once. A saved text never carries a
review: the file's review fields are written only for a revision a reviewer approved, so an edit cannot be
mistaken for an attested text. Conflicts: a save names the revision it started from; when the file has moved on
since, nothing is written and the caller is given both texts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection

from pipeline.atomic_files import write_atomic
from pipeline.content import editor
from pipeline.content.loader import SLUG_RE, load_topics, parse_article
from pipeline.content.model import Article
from pipeline.editorial import audit, record, staff
from pipeline.editorial.canonical import revision_of
from pipeline.errors import InputError, NotFound, Problem

_write_lock = threading.Lock()  # one writer per process between reading a file's revision and replacing it


@dataclass(frozen=True, kw_only=True)
class Draft:
    """The editor's form, as typed."""

    slug: str
    title: str = ""
    summary: str = ""
    topics: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()
    content_notes: tuple[str, ...] = ()
    link: str = ""
    publish_at: datetime
    body: str = ""


@dataclass(kw_only=True)
class Saved:
    article: Article | None = None
    revision: str | None = None  # its hash
    new: bool = False  # a new revision was recorded (False: the text was already stored)
    problems: list[Problem] = field(default_factory=list)  # errors: nothing was written
    conflict: Article | None = None  # the file as someone else saved it since the editor's starting revision


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def file_text(d: Draft, *, status: str, author: str, extra: dict[str, str] | None = None) -> str:
    """The Markdown file for ``d``: JSON strings are YAML, so nothing typed can change the front matter's shape."""
    lines = ["---", f"title: {_q(d.title)}", f"summary: {_q(d.summary)}",
             f"topics: [{', '.join(_q(t) for t in d.topics)}]", f"status: {status}",
             f"publish_at: {d.publish_at.isoformat()}", f"author: {_q(author)}"]
    if d.link:
        lines.append(f"link: {_q(d.link)}")
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    if d.content_notes:
        lines.append(f"content_notes: [{', '.join(_q(n) for n in d.content_notes)}]")
    if d.sources:
        lines.append("sources:")
        lines += [f"  - title: {_q(t)}\n    url: {_q(u)}" for t, u in d.sources]
    body = d.body.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join([*lines, "---", body.strip("\n"), ""])


def _kept_fields(path: Path) -> dict[str, str]:
    """Front-matter fields the form does not show (origin, updated_at), kept as they were."""
    from pipeline.content import frontmatter

    if not path.is_file():
        return {}
    try:
        data = frontmatter.parse(path.read_text(encoding="utf-8")).data
    except frontmatter.FrontMatterError:
        return {}
    out = {}
    if data.get("origin"):
        out["origin"] = _q(str(data["origin"]))
    if data.get("updated_at"):
        value = data["updated_at"]
        out["updated_at"] = value.isoformat() if hasattr(value, "isoformat") else _q(str(value))
    return out


def current(content_dir: Path, slug: str) -> Article | None:
    """The article as its file reads now (None when there is no file or it does not parse)."""
    path = content_dir / f"{slug}.md"
    if not SLUG_RE.match(slug) or not path.is_file():
        return None
    topics, _ = load_topics(content_dir / "topics.yaml")
    article, _ = parse_article(path.read_text(encoding="utf-8"), slug=slug, path=str(path),
                               topic_ids=frozenset(t.id for t in topics))
    return article


def save(conn: Connection, content_dir: Path, d: Draft, *, account: staff.Account, base: str | None, submit: bool,
         at: datetime) -> Saved:
    """Write ``d`` as content/<slug>.md and record it as a revision by ``account`` (and ``submitted`` when
    ``submit``). ``base``: the revision the editor started from (None for a new article)."""
    if not SLUG_RE.match(d.slug) or len(d.slug) > 120:
        return Saved(problems=[Problem(path="slug", line=1, field="slug",
                                       message="use lowercase words joined by hyphens, e.g. living-with-mbc")])
    path = content_dir / f"{d.slug}.md"
    topics, _ = load_topics(content_dir / "topics.yaml")
    with _write_lock:
        now = current(content_dir, d.slug)
        if base is None and path.exists():
            return Saved(problems=[Problem(path=str(path), line=1, field="slug",
                                           message="an article with this address already exists; choose another")])
        status = "review" if submit else "draft"
        text = file_text(d, status=status, author=(now.author if now and now.author else account.name),
                         extra=_kept_fields(path))
        article, problems = parse_article(text, slug=d.slug, path=str(path), topic_ids=frozenset(t.id for t in topics))
        if article is None:
            return Saved(problems=[p for p in problems if p.severity == "error"])
        rev = revision_of(article)
        if base is not None and now is not None and revision_of(now).hash not in (base, rev.hash):
            return Saved(article=article, revision=rev.hash, conflict=now, problems=[])
        write_atomic(path, text, skip_unchanged=False)
        new = record.record_revision(conn, rev, author=account.actor, at=at)
        if submit:
            audit.append(conn, "submitted", actor=account.actor, at=at, slug=d.slug, revision=rev.hash)
    return Saved(article=article, revision=rev.hash, new=new, problems=problems)


def after_approval(conn: Connection, content_dir: Path, slug: str, revision_hash: str, *, at: datetime,
                   mode: str) -> str | None:
    """Once a reviewer approved ``revision_hash``: if it is the file's text, mark the file approved with that review
    and schedule it (a time already past means now, so it reaches the next digest). Returns the publish time
    as ISO text, or None when the file has moved on (the approval stands for that revision; the newer text waits)."""
    article = current(content_dir, slug)
    if article is None or revision_of(article).hash != revision_hash:
        return None
    review = record.last_approval(conn, slug, mode)
    assert review is not None and review.revision == revision_hash
    pub = record.publication(conn, slug)
    when = pub.publish_at if pub and pub.state == "scheduled" else max(article.publish_at, at)
    with _write_lock:
        editor.queue_article(content_dir, slug, at=when, review=(review.reviewer, review.reviewed_on))
    article = current(content_dir, slug)
    assert article is not None
    record.set_publication(conn, slug, state="scheduled", publish_at=when, author=article.author,
                           updated_at=article.updated_at, at=at, actor=f"staff:{review.staff_id}",
                           revision_hash=revision_hash)
    return when.isoformat()


def reschedule(conn: Connection, content_dir: Path, slug: str, publish_at: datetime, *, account: staff.Account,
               at: datetime) -> None:
    """Set a new publish time for an article that has an approved revision (a past time means now)."""
    pub = record.publication(conn, slug)
    if pub is None or pub.state != "scheduled":
        raise InputError(f"{slug}: has no approved revision scheduled yet; a reviewer must approve it first")
    when = max(publish_at, at)
    path = content_dir / f"{slug}.md"
    if not path.is_file():
        raise NotFound(f"{path}: no such article")
    with _write_lock:
        text = path.read_text(encoding="utf-8")
        write_atomic(path, editor.set_fields(text, {"publish_at": when.isoformat()}))
    record.set_publication(conn, slug, state="scheduled", publish_at=when, author=pub.author,
                           updated_at=pub.updated_at, at=at, actor=account.actor, revision_hash=None)


def retract(conn: Connection, content_dir: Path, slug: str, reason: str, *, account: staff.Account,
            at: datetime) -> None:
    """Take an article off the site and out of the feeds at the next build, with the reason in the audit log."""
    reason = reason.strip()
    if not reason or len(reason) > 1000:
        raise InputError("reason: say in a sentence why it is retracted (at most 1000 characters)")
    pub = record.publication(conn, slug)
    path = content_dir / f"{slug}.md"
    if not path.is_file():
        raise NotFound(f"{path}: no such article")
    with _write_lock:
        write_atomic(path, editor.set_fields(path.read_text(encoding="utf-8"), {"status": "retracted"}))
    if pub is not None and pub.state != "retracted":
        conn.execute(record.publications.update().where(record.publications.c.slug == slug)
                     .values(state="retracted", changed_at=at))
    audit.append(conn, "retracted", actor=account.actor, at=at, slug=slug, reason=reason)


def raw_values(content_dir: Path, slug: str) -> dict | None:
    """The front matter and body of a file that does not parse as an article yet (a promoted draft whose title
    and summary are still to write), for the editor's form; None when there is no readable file."""
    from pipeline.content import frontmatter

    path = content_dir / f"{slug}.md"
    if not SLUG_RE.match(slug) or not path.is_file():
        return None
    try:
        doc = frontmatter.parse(path.read_text(encoding="utf-8"))
    except frontmatter.FrontMatterError:
        return None
    d = doc.data if isinstance(doc.data, dict) else {}

    def text(key: str) -> str:
        value = d.get(key)
        return value if isinstance(value, str) else ""

    sources = [(str(x.get("title") or ""), str(x.get("url") or "")) for x in d.get("sources") or []
               if isinstance(x, dict)]
    topics = [t for t in d.get("topics") or [] if isinstance(t, str)]
    notes = [n for n in d.get("content_notes") or [] if isinstance(n, str)]
    return {"slug": slug, "title": text("title"), "summary": text("summary"), "topics": topics, "sources": sources,
            "content_notes": ", ".join(notes), "link": text("link"), "body": doc.body.strip("\n"),
            "publish_at": d.get("publish_at")}
