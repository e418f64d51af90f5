from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from pipeline.store.engine import make_engine
from pipeline.store.tables import FOREIGN_TABLES, metadata


def test_migrations_produce_exactly_the_declared_schema(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            diff = compare_metadata(ctx, metadata)
            tables = set(inspect(conn).get_table_names()) - FOREIGN_TABLES
        assert diff == []
        assert tables == set(metadata.tables)
    finally:
        engine.dispose()


def test_migrating_twice_is_harmless(db_url):
    make_engine(db_url).dispose()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= set(metadata.tables)
    finally:
        engine.dispose()


def test_subscriber_ids_are_never_reused(db_url):
    from datetime import UTC, datetime

    from pipeline.store.tables import subscribers
    from pipeline.subscribers import repository

    engine = make_engine(db_url)
    at = datetime(2026, 11, 25, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            first, _ = repository.upsert(conn, email="gone@example.org", name="", topics=(), cadence="weekly",
                                         timezone="UTC", at=at)
            conn.execute(subscribers.delete().where(subscribers.c.id == first))
            second, _ = repository.upsert(conn, email="new@example.org", name="", topics=(), cadence="weekly",
                                          timezone="UTC", at=at)
        assert second > first
    finally:
        engine.dispose()
