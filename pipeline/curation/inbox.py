"""The inbox store: candidates kept once by canonical URL or URI GUID, each with every source that carried it,
and each source's fetch health. All SQL of the curation inbox is here."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from pipeline.curation import actions
from pipeline.curation.parse import Item
from pipeline.errors import InputError, NotFound
from pipeline.store.tables import curation_candidate_sources as t_links
from pipeline.store.tables import curation_candidates as t_cand
from pipeline.store.tables import curation_sources as t_src

KEEP_FOR = timedelta(days=90)
_URI_GUID = re.compile(r"^[a-z][a-z0-9+.-]*:\S+$", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """Scheme and host in lower case, no default port, no fragment, no utm_* parameters."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not k.lower().startswith("utm_")])
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Candidate:
    id: int
    title: str
    summary: str
    url: str
    sources: tuple[str, ...]  # source ids, the first that carried it first
    published: datetime | None
    first_seen: datetime
    state: str
    slug: str | None

    def as_json(self) -> dict:
        return {"id": self.id, "title": self.title, "url": self.url, "sources": list(self.sources),
                "published": self.published.isoformat() if self.published else None,
                "first_seen": self.first_seen.isoformat(), "state": self.state, "summary": self.summary}


def _find(conn: Connection, source_id: str, item: Item) -> int | None:
    if item.guid:
        found = conn.execute(select(t_links.c.candidate_id).where(
            t_links.c.source_id == source_id, t_links.c.guid == item.guid).limit(1)).scalar()
        if found is not None:
            return found
        if _URI_GUID.match(item.guid):
            found = conn.execute(select(t_cand.c.id).where(t_cand.c.guid_hash == _hash(item.guid)).limit(1)).scalar()
            if found is not None:
                return found
    return conn.execute(select(t_cand.c.id).where(t_cand.c.url_hash == _hash(canonical_url(item.url)))).scalar()


def store_items(conn: Connection, source_id: str, items: Sequence[Item], *, at: datetime) -> int:
    """Add the items not yet known; link known ones to this source too. Returns how many candidates are new.
    Items published more than 90 days ago are left out, so a dropped candidate does not come back."""
    new = 0
    for item in items:
        if item.published is not None and item.published < at - KEEP_FOR:
            continue
        candidate = _find(conn, source_id, item)
        if candidate is None:
            guid_hash = _hash(item.guid) if item.guid and _URI_GUID.match(item.guid) else None
            candidate = conn.execute(insert(t_cand).values(
                url=item.url, url_hash=_hash(canonical_url(item.url)), guid_hash=guid_hash, title=item.title,
                summary=item.summary, published_at=item.published, first_seen_at=at, state="new",
            ).returning(t_cand.c.id)).scalar_one()
            new += 1
        linked = set(conn.execute(select(t_links.c.source_id).where(t_links.c.candidate_id == candidate)).scalars())
        if source_id not in linked:
            conn.execute(insert(t_links).values(candidate_id=candidate, source_id=source_id, guid=item.guid,
                                                first_seen_at=at, seq=len(linked)))
    return new


def drop_stale(conn: Connection, *, at: datetime) -> int:
    """Remove candidates nobody acted on within 90 days of first seeing them."""
    stale = list(conn.execute(select(t_cand.c.id).where(t_cand.c.state == "new",
                                                        t_cand.c.first_seen_at < at - KEEP_FOR)).scalars())
    for i in range(0, len(stale), 500):
        chunk = stale[i:i + 500]
        conn.execute(delete(t_links).where(t_links.c.candidate_id.in_(chunk)))
        conn.execute(delete(t_cand).where(t_cand.c.id.in_(chunk)))
    if stale:
        actions.record(conn, "dropped", at=at, detail=f"{len(stale)} candidates older than 90 days, never acted on")
    return len(stale)


def candidates(conn: Connection, *, states: Sequence[str] = ("new",), ids: Sequence[int] | None = None) -> list[Candidate]:
    query = select(t_cand).where(t_cand.c.state.in_(list(states))).order_by(t_cand.c.first_seen_at, t_cand.c.id)
    if ids is not None:
        query = select(t_cand).where(t_cand.c.id.in_(list(ids)))
    rows = list(conn.execute(query))
    links: dict[int, list[str]] = {}
    if rows:
        for link in conn.execute(select(t_links.c.candidate_id, t_links.c.source_id)
                                 .where(t_links.c.candidate_id.in_([r.id for r in rows]))
                                 .order_by(t_links.c.seq, t_links.c.source_id)):
            links.setdefault(link.candidate_id, []).append(link.source_id)
    return [Candidate(id=r.id, title=r.title, summary=r.summary, url=r.url, sources=tuple(links.get(r.id, ())),
                      published=r.published_at, first_seen=r.first_seen_at, state=r.state, slug=r.slug)
            for r in rows]


def get(conn: Connection, candidate_id: int) -> Candidate:
    found = candidates(conn, ids=[candidate_id])
    if not found:
        raise NotFound(f"inbox: no candidate {candidate_id}; see 'pipeline inbox list'")
    return found[0]


def _require_new(candidate: Candidate) -> None:
    if candidate.state == "promoted":
        raise InputError(f"inbox: candidate {candidate.id} was already promoted to content/{candidate.slug}.md")
    if candidate.state != "new":
        raise InputError(f"inbox: candidate {candidate.id} was {candidate.state}; nothing to do")


def dismiss(conn: Connection, candidate_id: int, *, at: datetime) -> Candidate:
    candidate = get(conn, candidate_id)
    _require_new(candidate)
    conn.execute(update(t_cand).where(t_cand.c.id == candidate_id).values(state="dismissed", acted_at=at))
    actions.record(conn, "dismissed", at=at, candidate_id=candidate_id, source_id=candidate.sources[0] if candidate.sources else None)
    return candidate


def mark_promoted(conn: Connection, candidate: Candidate, *, slug: str, at: datetime) -> None:
    _require_new(candidate)
    done = conn.execute(update(t_cand).where(t_cand.c.id == candidate.id, t_cand.c.state == "new")
                        .values(state="promoted", slug=slug, acted_at=at)).rowcount
    if done != 1:
        raise InputError(f"inbox: candidate {candidate.id} was acted on meanwhile; see 'pipeline inbox list'")
    actions.record(conn, "promoted", at=at, candidate_id=candidate.id, slug=slug,
                   source_id=candidate.sources[0] if candidate.sources else None)


# --- source health ---------------------------------------------------------------------------------------------

def health(conn: Connection, source_id: str):
    row = conn.execute(select(t_src).where(t_src.c.id == source_id)).first()
    if row is None:
        conn.execute(insert(t_src).values(id=source_id, items_seen=0, failures=0))
        row = conn.execute(select(t_src).where(t_src.c.id == source_id)).one()
    return row


def all_health(conn: Connection) -> dict[str, object]:
    return {row.id: row for row in conn.execute(select(t_src))}


def save_health(conn: Connection, source_id: str, **values) -> None:
    health(conn, source_id)
    conn.execute(update(t_src).where(t_src.c.id == source_id).values(**values))
