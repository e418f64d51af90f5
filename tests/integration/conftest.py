from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

PG_BASE = os.environ.get("PIPELINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def require_services() -> bool:
    return os.environ.get("PIPELINE_REQUIRE_SERVICES") == "1"


def _pg_reachable() -> str | None:
    try:
        engine = create_engine(PG_BASE)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver error means "not reachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pipeline.db'}"
        return
    problem = _pg_reachable()
    if problem:
        if require_services():
            pytest.fail(f"PostgreSQL is required (PIPELINE_REQUIRE_SERVICES=1) but not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE}: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
