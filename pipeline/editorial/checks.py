"""What `pipeline check` says about the editorial record: texts waiting for review, attestation-only articles,
reviews coming due, and placeholders that must not go out to readers of a real site."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.engine import Connection

from pipeline.content.checks import next_review_due
from pipeline.content.model import Article, Library
from pipeline.content.placeholders import is_default_postal_address, is_placeholder_reviewer
from pipeline.editorial import record
from pipeline.editorial.live import live_articles
from pipeline.errors import Problem

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def is_local(site_url: str) -> bool:
    host = (urlsplit(site_url).hostname or "").lower()
    return host in LOCAL_HOSTS or host.endswith((".localhost", ".test", ".local"))


def _warn(path: str, field: str, message: str, line: int = 1) -> Problem:
    return Problem(path=path, line=line, field=field, message=message, severity="warning")


def review_due(live: list[Article], *, at: datetime, within: timedelta) -> list[tuple[Article, bool]]:
    """Live articles whose next review is due by ``at + within``: (article, overdue), soonest first."""
    out = []
    for a in live:
        if a.publish_at <= at and a.reviewed_on:
            due = next_review_due(a.reviewed_on)
            if due <= (at + within).date():
                out.append((a, due < at.date()))
    out.sort(key=lambda pair: (next_review_due(pair[0].reviewed_on), pair[0].slug))  # type: ignore[arg-type]
    return out


def editorial_problems(conn: Connection, library: Library, *, present: set[str], at: datetime, mode: str,
                       site_url: str, postal_address: str, due_within: timedelta = timedelta(days=30)) -> list[Problem]:
    """Warnings only: none of these stops a build, because what readers see is already the approved text."""
    out: list[Problem] = []
    paths = {a.slug: a.path for a in library.articles}
    report = record.sync_files(conn, list(library.articles), present=present, at=at, mode=mode, dry_run=True)
    for slug, hash_, why in report.waiting:
        out.append(_warn(paths[slug], "review", f"its newest text (revision {hash_[:12]}) waits for review: {why}. "
                                                "Readers see the last approved text meanwhile."))
    live = live_articles(conn, at=at, mode=mode)
    if mode == "staff":
        approved = record.approvals(record.reviews_of(conn), "attested")
        attested_only = {r.slug for r in approved if r.kind == "attested"} - {r.slug for r in approved if r.kind == "staff"}
        for slug in sorted(attested_only & set(paths)):
            out.append(_warn(paths[slug], "review", "has only a front-matter attestation, which does not count in "
                                                    "staff review mode; it is not live until a reviewer approves it"))
    for a, overdue in review_due(live, at=at, within=due_within):
        due = next_review_due(a.reviewed_on)  # type: ignore[arg-type]
        text = f"its medical review was due on {due.isoformat()}" if overdue else \
            f"its medical review is due on {due.isoformat()}"
        out.append(_warn(paths.get(a.slug, a.path), "reviewed_on", text + "; ask a reviewer to check it again"))
    if not is_local(site_url):
        for a in library.articles:
            if a.status in ("approved", "review") and is_placeholder_reviewer(a.reviewed_by):
                out.append(_warn(a.path, "reviewed_by", f"{a.reviewed_by!r} is a placeholder; name your real "
                                                        "medical reviewer (or use a reviewer account)"))
        if is_default_postal_address(postal_address):
            out.append(_warn("PIPELINE_POSTAL_ADDRESS", "postal_address",
                             "is the example address; set your organisation's postal address (every digest shows it)"))
    return out
