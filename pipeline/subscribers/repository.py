"""Reading and writing subscribers and suppressions. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Select, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from pipeline.store.tables import subscribers as t_sub
from pipeline.store.tables import suppressions as t_sup
from pipeline.subscribers.csvio import ExportRow
from pipeline.subscribers.model import Subscriber, email_key, join_topics, split_topics


def _to_subscriber(row: Row) -> Subscriber:
    return Subscriber(id=row.id, email=row.email, name=row.name, topics=split_topics(row.topics),
                      cadence=row.cadence, timezone=row.timezone, status=row.status,
                      consent_source=row.consent_source, consent_at=row.consent_at,
                      paused_until=row.paused_until, token_version=row.token_version)


def get(conn: Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(select(t_sub).where(t_sub.c.id == subscriber_id)).first()
    return _to_subscriber(row) if row else None


def get_by_email(conn: Connection, email: str) -> Subscriber | None:
    row = conn.execute(select(t_sub).where(t_sub.c.email_key == email_key(email))).first()
    return _to_subscriber(row) if row else None


def upsert(conn: Connection, *, email: str, name: str, topics: tuple[str, ...], cadence: str, timezone: str,
           at: datetime, status: str | None = None, consent_source: str | None = None,
           consent_at: datetime | None = None) -> tuple[int, bool]:
    """Insert or update by case-insensitive email. Returns (id, created).

    An existing subscriber who unsubscribed is not silently re-subscribed: status changes only if given.
    """
    key = email_key(email)
    existing = conn.execute(select(t_sub.c.id, t_sub.c.status).where(t_sub.c.email_key == key)).first()
    values = {"email": email.strip(), "name": name, "topics": join_topics(topics), "cadence": cadence,
              "timezone": timezone, "updated_at": at}
    if existing is None:
        values.update(email_key=key, status=status or "pending", created_at=at, token_version=0,
                      consent_source=consent_source, consent_at=(consent_at or at) if consent_source else None)
        new_id = conn.execute(insert(t_sub).values(**values).returning(t_sub.c.id)).scalar_one()
        return new_id, True
    if status is not None and existing.status != "unsubscribed":
        values["status"] = status
        if consent_source:
            values.update(consent_source=consent_source, consent_at=consent_at or at)
    conn.execute(update(t_sub).where(t_sub.c.id == existing.id).values(**values))
    return existing.id, False


def all_subscribers(conn: Connection) -> Iterator[Subscriber]:
    for row in conn.execute(select(t_sub).order_by(t_sub.c.id)):
        yield _to_subscriber(row)


def export_rows(conn: Connection) -> Iterator[ExportRow]:
    """Every subscriber with their consent record and any suppression, then suppressed addresses with no
    subscriber (so that an import elsewhere keeps them suppressed)."""
    iso = lambda v: v.isoformat() if v is not None else ""  # noqa: E731
    query = (select(t_sub, t_sup.c.reason, t_sup.c.source.label("sup_source"), t_sup.c.created_at.label("sup_at"))
             .outerjoin(t_sup, t_sup.c.email_key == t_sub.c.email_key).order_by(t_sub.c.id))
    for r in conn.execute(query):
        yield ExportRow(email=r.email, name=r.name, topics=split_topics(r.topics), cadence=r.cadence,
                        timezone=r.timezone, status=r.status, consent_source=r.consent_source or "",
                        consent_at=iso(r.consent_at), suppression=r.reason or "", suppression_source=r.sup_source or "",
                        suppressed_at=iso(r.sup_at))
    orphans = (select(t_sup).outerjoin(t_sub, t_sub.c.email_key == t_sup.c.email_key)
               .where(t_sub.c.id.is_(None)).order_by(t_sup.c.created_at, t_sup.c.email_key))
    for r in conn.execute(orphans):
        yield ExportRow(email=r.email_key, suppression=r.reason, suppression_source=r.source,
                        suppressed_at=iso(r.created_at))


def _eligible_query(columns, *, cadence: str, at: datetime):
    return (
        select(*columns)
        .outerjoin(t_sup, t_sup.c.email_key == t_sub.c.email_key)
        .where(t_sub.c.status == "confirmed", t_sub.c.cadence == cadence, t_sup.c.email_key.is_(None),
               or_(t_sub.c.paused_until.is_(None), t_sub.c.paused_until <= at))
        .order_by(t_sub.c.id)
        # On the statement, not the connection: Connection.execution_options changes the connection in place,
        # and every later statement on it would then use a server-side cursor (no executemany on PostgreSQL).
        .execution_options(yield_per=5000)
    )


def eligible_selection(*, cadence: str, at: datetime) -> Select:
    """(id, topics, email, token_version) of the eligible subscribers, unordered: for planning inside the database."""
    columns = [t_sub.c.id, t_sub.c.topics, t_sub.c.email, t_sub.c.token_version]
    return _eligible_query(columns, cadence=cadence, at=at).order_by(None).execution_options(yield_per=None)


def eligible_topic_counts(conn: Connection, *, cadence: str, at: datetime) -> list[tuple[str, int]]:
    """(topics as stored, how many eligible subscribers chose them)."""
    chosen = eligible_selection(cadence=cadence, at=at).subquery()
    return [(topics, int(n)) for topics, n in conn.execute(
        select(chosen.c.topics, func.count()).group_by(chosen.c.topics).order_by(chosen.c.topics))]


def eligible(conn: Connection, *, cadence: str, at: datetime) -> Iterator[Subscriber]:
    """Confirmed, not paused, not suppressed subscribers of this cadence (invariant 2)."""
    for row in conn.execute(_eligible_query([t_sub], cadence=cadence, at=at)):
        yield _to_subscriber(row)


_CONTACTS = (
    select(t_sub.c.id, t_sub.c.email, t_sub.c.token_version, t_sub.c.status, t_sub.c.paused_until,
           t_sup.c.email_key.label("suppressed"))
    .outerjoin(t_sup, t_sup.c.email_key == t_sub.c.email_key)
    .where(t_sub.c.id.in_(bindparam("ids", expanding=True)))
)


def mailable_contacts(conn: Connection, ids: list[int], *, at: datetime) -> dict[int, tuple[str, int]]:
    """Of ``ids``, those still mailable (not since unsubscribed, suppressed or paused): id -> (email, token version)."""
    if not ids:
        return {}
    # Look up by primary key and filter here: with the status in the WHERE clause, SQLite reads every confirmed
    # subscriber through ix_subscribers_status_cadence, once per batch of a send.
    rows = conn.execute(_CONTACTS, {"ids": list(ids)})
    return {sid: (email, version) for sid, email, version, status, paused_until, suppressed in rows
            if status == "confirmed" and suppressed is None and (paused_until is None or paused_until <= at)}


def still_mailable_ids(conn: Connection, ids: list[int], *, at: datetime) -> set[int]:
    """Of ``ids``, those who have not since unsubscribed, been suppressed, or paused."""
    return set(mailable_contacts(conn, ids, at=at))


def suppress(conn: Connection, *, email: str, reason: str, at: datetime, source: str = "manual", detail: str = "") -> bool:
    """Add to the suppression list. Returns False if the address was already suppressed."""
    key = email_key(email)
    if conn.execute(select(t_sup.c.email_key).where(t_sup.c.email_key == key)).first():
        return False
    conn.execute(insert(t_sup).values(email_key=key, reason=reason, detail=detail, source=source, created_at=at))
    return True


def unsuppress(conn: Connection, *, email: str) -> bool:
    return conn.execute(t_sup.delete().where(t_sup.c.email_key == email_key(email))).rowcount > 0


def suppression_of(conn: Connection, email: str) -> Row | None:
    return conn.execute(select(t_sup).where(t_sup.c.email_key == email_key(email))).first()


def is_suppressed(conn: Connection, email: str) -> bool:
    return conn.execute(select(t_sup.c.email_key).where(t_sup.c.email_key == email_key(email))).first() is not None


def suppression_list(conn: Connection) -> list[Row]:
    return list(conn.execute(select(t_sup).order_by(t_sup.c.created_at, t_sup.c.email_key)))


def counts_by_status(conn: Connection) -> dict[str, int]:
    return dict(conn.execute(select(t_sub.c.status, func.count()).group_by(t_sub.c.status)).all())


__all__ = ["get", "get_by_email", "upsert", "all_subscribers", "export_rows", "eligible", "eligible_selection", "eligible_topic_counts",
           "mailable_contacts", "still_mailable_ids", "suppress", "unsuppress", "suppression_of", "is_suppressed", "suppression_list", "counts_by_status"]


def topics_by_id(conn: Connection, ids: list[int]) -> list[tuple[int, tuple[str, ...]]]:
    """(id, topics) of each of ``ids`` that exists, in id order."""
    out: list[tuple[int, tuple[str, ...]]] = []
    for i in range(0, len(ids), 1000):
        rows = conn.execute(select(t_sub.c.id, t_sub.c.topics).where(t_sub.c.id.in_(ids[i:i + 1000])))
        out.extend((sid, split_topics(topics)) for sid, topics in rows)
    out.sort()
    return out
