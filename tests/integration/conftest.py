from __future__ import annotations

import sys
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from websupport import Clock, PostgresDatabase, Site, make_settings, skip_or_fail  # noqa: E402


@pytest.fixture(scope="session")
def portal():
    with start_blocking_portal() as p:
        yield p


@pytest.fixture(scope="session")
def postgres_db():
    try:
        db = PostgresDatabase()
    except Exception as exc:  # any connection failure means "no server here"
        skip_or_fail(f"PostgreSQL is not reachable: {type(exc).__name__}")
    yield db
    db.drop()


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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_site(request, tmp_path, portal):
    """The app on SQLite and on PostgreSQL (skipped, with the reason, when the server is not reachable)."""
    if request.param == "sqlite":
        s = _site(tmp_path, f"sqlite:///{tmp_path}/web.db", portal)
    else:
        db = request.getfixturevalue("postgres_db")
        s = _site(tmp_path, db.url, portal)
        db.empty(s.engine)
    yield s
    _close(s, portal)
