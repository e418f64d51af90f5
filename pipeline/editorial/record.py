"""Revisions and reviews: content/ files become immutable revisions; attestations and staff reviews name one each.

``sync_files`` is what the feed job and `pipeline content import` run. It only inserts revisions and reviews, and
keeps each article's publication (its time, or its retraction) in line with the file; it never writes content/.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from pipeline.content.model import Article
from pipeline.editorial import audit
from pipeline.editorial.canonical import Revision, revision_of
from pipeline.store.tables import publications, reviews, revisions

MODES = ("attested", "staff")


def counted_kinds(mode: str) -> tuple[str, ...]:
    """Which approvals make a revision publishable in this review mode."""
    return ("staff",) if mode == "staff" else ("staff", "attested")


def file_actor(slug: str) -> str:
    return f"file:content/{slug}.md"


@dataclass(frozen=True, kw_only=True)
class Stored:
    id: int
    slug: str
    hash: str
    text: str
    author: str
    created_at: datetime

    @property
    def fields(self) -> dict:
        return json.loads(self.text)


@dataclass(frozen=True, kw_only=True)
class Review:
    id: int
    slug: str
    revision: str
    verdict: str
    kind: str
    staff_id: int | None
    reviewer: str
    reviewed_on: date
    at: datetime
    note: str


@dataclass(frozen=True, kw_only=True)
class Publication:
    slug: str
    state: str
    publish_at: datetime
    author: str | None
    updated_at: datetime | None


@dataclass(kw_only=True)
class SyncReport:
    created: list[str] = field(default_factory=list)  # slugs with a new revision
    attested: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    # Files whose current text has no approval that counts in this mode: (slug, hash, why).
    waiting: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.created)} new revisions, {len(self.attested)} attested, {len(self.scheduled)} scheduled, "
                f"{len(self.retracted)} retracted, {len(self.waiting)} waiting for review")


def _review(r) -> Review:
    return Review(id=r.id, slug=r.slug, revision=r.revision, verdict=r.verdict, kind=r.kind, staff_id=r.staff_id,
                  reviewer=r.reviewer, reviewed_on=r.reviewed_on, at=r.at, note=r.note)


def _stored(r) -> Stored:
    return Stored(id=r.id, slug=r.slug, hash=r.hash, text=r.text, author=r.author, created_at=r.created_at)


def revision(conn: Connection, slug: str, hash_or_prefix: str) -> Stored | None:
    """A revision of ``slug`` by its hash, or by a unique prefix of at least 8 hex digits."""
    if len(hash_or_prefix) < 8:
        return None
    rows = conn.execute(select(revisions).where(revisions.c.slug == slug,
                                                revisions.c.hash.startswith(hash_or_prefix.lower()))).all()
    return _stored(rows[0]) if len(rows) == 1 else None


def revisions_of(conn: Connection, slug: str) -> list[Stored]:
    return [_stored(r) for r in conn.execute(select(revisions).where(revisions.c.slug == slug).order_by(revisions.c.id))]


def reviews_of(conn: Connection, slug: str | None = None) -> list[Review]:
    q = select(reviews).order_by(reviews.c.id)
    if slug is not None:
        q = q.where(reviews.c.slug == slug)
    return [_review(r) for r in conn.execute(q)]


def publication(conn: Connection, slug: str) -> Publication | None:
    r = conn.execute(select(publications).where(publications.c.slug == slug)).first()
    return Publication(slug=r.slug, state=r.state, publish_at=r.publish_at, author=r.author,
                       updated_at=r.updated_at) if r else None


def approvals(all_reviews: list[Review], mode: str) -> list[Review]:
    kinds = counted_kinds(mode)
    return [r for r in all_reviews if r.verdict == "approved" and r.kind in kinds]


def last_approval(conn: Connection, slug: str, mode: str) -> Review | None:
    found = approvals(reviews_of(conn, slug), mode)
    return found[-1] if found else None


def is_approved(conn: Connection, slug: str, hash_: str, mode: str) -> bool:
    return any(r.revision == hash_ for r in approvals(reviews_of(conn, slug), mode))


def record_revision(conn: Connection, rev: Revision, *, author: str, at: datetime) -> bool:
    """Store ``rev`` unless its slug already has that text. True when it is new."""
    exists = conn.execute(select(revisions.c.id).where(revisions.c.slug == rev.slug,
                                                       revisions.c.hash == rev.hash)).first()
    if exists:
        return False
    conn.execute(revisions.insert().values(slug=rev.slug, hash=rev.hash, text=rev.text, author=author, created_at=at))
    audit.append(conn, "revision_created", actor=author, at=at, slug=rev.slug, revision=rev.hash)
    return True


def add_review(conn: Connection, *, slug: str, revision_hash: str, verdict: str, kind: str, staff_id: int | None,
               reviewer: str, reviewed_on: date, at: datetime, note: str, actor: str) -> None:
    conn.execute(reviews.insert().values(slug=slug, revision=revision_hash, verdict=verdict, kind=kind,
                                         staff_id=staff_id, reviewer=reviewer, reviewed_on=reviewed_on, at=at,
                                         note=note))
    event = "attested" if kind == "attested" else verdict
    details = {"reviewer": reviewer, "reviewed_on": reviewed_on.isoformat()} if kind == "attested" else {}
    audit.append(conn, event, actor=actor, at=at, slug=slug, revision=revision_hash,
                 **details, **({"note": note} if note else {}))


_UNREAD = object()


def set_publication(conn: Connection, slug: str, *, state: str, publish_at: datetime, author: str | None,
                    updated_at: datetime | None, at: datetime, actor: str, revision_hash: str | None,
                    old=_UNREAD) -> str | None:
    """Bring the article's publication in line; returns the audit event written ('scheduled', 'retracted') or None.
    ``old``: its current row (or None), when the caller has already read it."""
    if old is _UNREAD:
        old = publication(conn, slug)
    values = {"state": state, "publish_at": publish_at, "author": author, "updated_at": updated_at, "changed_at": at}
    if old is None:
        conn.execute(publications.insert().values(slug=slug, **values))
    elif (old.state, old.publish_at, old.author, old.updated_at) != (state, publish_at, author, updated_at):
        conn.execute(publications.update().where(publications.c.slug == slug).values(**values))
    if old is not None and old.state == state and (state == "retracted" or old.publish_at == publish_at):
        return None
    event = "retracted" if state == "retracted" else "scheduled"
    extra = {"publish_at": publish_at.isoformat()} if state == "scheduled" else {}
    audit.append(conn, event, actor=actor, at=at, slug=slug, revision=revision_hash, **extra)
    return event


def sync_files(conn: Connection, articles: list[Article], *, present: set[str], at: datetime, mode: str,
               author: str | None = None, dry_run: bool = False) -> SyncReport:
    """Record what content/ holds now. ``articles``: the files that parsed; ``present``: every slug with a file
    (a file that fails to parse is present, so its article is not retracted for a typo). ``author``: a staff
    actor to credit for new revisions instead of the file. ``dry_run``: report only (for `pipeline check`)."""
    report = SyncReport()
    known = {(r.slug, r.hash) for r in conn.execute(select(revisions.c.slug, revisions.c.hash))}
    by_slug: dict[str, list[Review]] = defaultdict(list)
    for r in reviews_of(conn):
        by_slug[r.slug].append(r)
    pubs = {r.slug: r for r in conn.execute(select(publications))}
    for a in articles:
        rev = revision_of(a)
        actor = file_actor(a.slug)
        if (a.slug, rev.hash) not in known:
            report.created.append(a.slug)
            if not dry_run:
                record_revision(conn, rev, author=author or actor, at=at)
                if a.status == "review":
                    audit.append(conn, "submitted", actor=author or actor, at=at, slug=a.slug, revision=rev.hash)
        if a.status not in ("approved", "review"):
            if a.status == "retracted" and a.slug in pubs and pubs[a.slug].state != "retracted":
                report.retracted.append(a.slug)
                if not dry_run:
                    old = pubs[a.slug]
                    set_publication(conn, a.slug, state="retracted", publish_at=old.publish_at, author=a.author,
                                    updated_at=a.updated_at, at=at, actor=actor, revision_hash=None)
            continue
        mine = by_slug.get(a.slug, [])
        attestations = [r for r in mine if r.kind == "attested" and r.verdict == "approved"]
        approved = {r.revision for r in approvals(mine, mode)}
        if a.status == "approved" and rev.hash not in approved:
            # Later than every review of the article, of any kind: the review fields that `content queue` wrote after
            # a reviewer's approval describe that approved text, never an edit made to the file afterwards.
            newest = max((r.reviewed_on for r in mine), default=None)
            fresh = a.reviewed_by and a.reviewed_on and (newest is None or a.reviewed_on > newest)
            already = any(r.revision == rev.hash for r in attestations)
            if fresh and not already:
                report.attested.append(a.slug)
                if not dry_run:
                    add_review(conn, slug=a.slug, revision_hash=rev.hash, verdict="approved", kind="attested",
                               staff_id=None, reviewer=a.reviewed_by, reviewed_on=a.reviewed_on, at=at, note="",
                               actor=actor)
                if mode == "attested":
                    approved.add(rev.hash)
        if rev.hash not in approved:
            if mode == "staff":
                why = "no reviewer has approved this text (staff review mode: front-matter reviews do not count)"
            elif a.status == "approved":
                why = ("it changed after its review; a reviewer must approve it with 'pipeline content approve "
                       f"{a.slug}', or the front matter needs a new reviewed_on")
            else:
                why = "no reviewer has approved this text yet"
            report.waiting.append((a.slug, rev.hash, why))
        if a.status == "approved":
            pub = pubs.get(a.slug)
            if pub is None or pub.state != "scheduled" or pub.publish_at != a.publish_at:
                report.scheduled.append(a.slug)
            if not dry_run:
                set_publication(conn, a.slug, state="scheduled", publish_at=a.publish_at, author=a.author,
                                updated_at=a.updated_at, at=at, actor=actor, revision_hash=rev.hash, old=pub)
    for slug, pub in pubs.items():
        if pub.state == "scheduled" and slug not in present:
            report.retracted.append(slug)
            if not dry_run:
                set_publication(conn, slug, state="retracted", publish_at=pub.publish_at, author=pub.author,
                                updated_at=pub.updated_at, at=at, actor=file_actor(slug), revision_hash=None)
    return report
