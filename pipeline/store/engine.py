"""Engines for SQLite (WAL, under var/) and PostgreSQL, and schema migration on start-up."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from pipeline.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, *, migrate: bool = True) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # 32 MiB a connection instead of 2: a send's claims read a thousand subscribers a batch.
            cur.execute("PRAGMA cache_size=-32768")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # IMMEDIATE takes the write lock up front, so two senders never both read "pending" and then both write.
            # A connection marked read_only (execution option) only reads: a plain BEGIN, a snapshot in WAL mode.
            read_only = conn.get_execution_options().get("read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if migrate:
        try:
            upgrade(engine)
        except OperationalError as exc:
            raise StoreError(f"PIPELINE_DATABASE_URL: cannot open the database ({exc.orig}); check the URL and that the server runs") from None
    return engine


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
