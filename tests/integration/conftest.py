from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

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


# ----- web app fixtures (see websupport.py) -----

from websupport import Clock, Site, make_settings  # noqa: E402


@pytest.fixture(scope="session")
def portal():
    with start_blocking_portal() as p:
        yield p


def _site(tmp_path: Path, url: str, portal, **overrides) -> Site:
    from pipeline.context import Context
    from pipeline.web.app import create_app

    settings = make_settings(tmp_path, url, **overrides)
    ctx = Context(settings)
    clock = Clock()
    return Site(settings=settings, ctx=ctx, app=create_app(ctx, clock=clock), clock=clock, portal=portal)


def _close(site: Site, portal) -> None:
    for client in site.clients.values():
        portal.call(client.aclose)
    site.engine.dispose()


@pytest.fixture
def site(tmp_path, portal):
    """The app on a fresh SQLite database."""
    s = _site(tmp_path, f"sqlite:///{tmp_path}/web.db", portal)
    yield s
    _close(s, portal)


@pytest.fixture
def any_site(db_url, tmp_path, portal):
    """The app on SQLite and on PostgreSQL (``db_url`` skips, with the reason, when the server is unreachable)."""
    s = _site(tmp_path, db_url, portal)
    yield s
    _close(s, portal)
