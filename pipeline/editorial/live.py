"""The live view: for each scheduled article, its newest approved revision. Retraction wins over every revision.

Feeds, pages, digests and the archive are built from these Articles, never from the files in content/.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from pipeline.content.checks import next_review_due
from pipeline.content.model import Article, Library
from pipeline.editorial import audit
from pipeline.editorial.canonical import apply
from pipeline.editorial.record import approvals, reviews_of
from pipeline.store.tables import publications, revisions


def live_articles(conn: Connection, *, at: datetime, mode: str) -> list[Article]:
    """Every scheduled article that has an approved revision, as that revision reads (live ones have
    ``publish_at <= at``; the others are queued). The review fields come from the approval itself."""
    pubs = {r.slug: r for r in conn.execute(select(publications).where(publications.c.state == "scheduled"))}
    chosen: dict[str, list] = defaultdict(list)
    for r in approvals(reviews_of(conn), mode):
        if r.slug in pubs:
            chosen[r.slug].append(r)
    if not chosen:
        return []
    wanted = sorted({found[-1].revision for found in chosen.values()})
    texts = {}
    for i in range(0, len(wanted), 500):  # SQLite bounds the number of parameters in one statement
        texts.update({(r.slug, r.hash): r.text for r in conn.execute(
            select(revisions.c.slug, revisions.c.hash, revisions.c.text)
            .where(revisions.c.hash.in_(wanted[i:i + 500])))})
    out = []
    for slug, found in sorted(chosen.items()):
        pub, review = pubs[slug], found[-1]
        updated = pub.updated_at
        # A later approved text is an update readers should see as one, dated by its approval.
        if len({r.revision for r in found}) > 1 and pub.publish_at < review.at <= at:
            updated = max(updated, review.at) if updated else review.at
        base = Article(slug=slug, title="", summary="", topics=(), status="approved", publish_at=pub.publish_at,
                       reviewed_by=review.reviewer, reviewed_on=review.reviewed_on, updated_at=updated,
                       author=pub.author, path=f"content/{slug}.md",
                       review_overdue=next_review_due(review.reviewed_on) < at.date())
        out.append(apply(base, texts[(slug, review.revision)]))
    return out


def publishing_library(conn: Connection, library: Library, *, at: datetime, mode: str) -> Library:
    """``library``'s topics with the articles of the live view (in place of the files' articles)."""
    return Library(topics=library.topics, articles=tuple(live_articles(conn, at=at, mode=mode)))


def record_went_live(conn: Connection, live: list[Article], *, at: datetime, actor: str = "feed-build") -> int:
    """Log ``went_live`` for each (article, revision) seen live for the first time (again, after a retraction)."""
    from pipeline.editorial.canonical import revision_of

    last: dict[str, tuple[str, str | None]] = {}
    for e in audit.entries(conn, events=("went_live", "retracted")):
        last[e.slug] = (e.event, e.revision)  # type: ignore[index]
    n = 0
    for a in live:
        if a.publish_at > at:
            continue
        rev = revision_of(a).hash
        if last.get(a.slug) != ("went_live", rev):
            audit.append(conn, "went_live", actor=actor, at=at, slug=a.slug, revision=rev)
            n += 1
    return n
