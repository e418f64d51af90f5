from __future__ import annotations

import sys
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))



@pytest.fixture
def db_url(database_url):
    """The root conftest's ``database_url``: a fresh SQLite file or PostgreSQL schema (skipped with the reason,
    or failed under PIPELINE_REQUIRE_SERVICES=1, when PostgreSQL is unreachable)."""
    return database_url


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


@pytest.fixture
def sendgrid_site(tmp_path, portal):
    """The app on a fresh SQLite database, delivering through SendGrid at an address where nothing listens (a test
    that uses it must not expect mail to arrive)."""
    s = _site(tmp_path, f"sqlite:///{tmp_path}/web.db", portal, delivery="sendgrid", sendgrid_api_key="SG.test",
              sendgrid_host="http://127.0.0.1:9")
    yield s
    _close(s, portal)


@pytest.fixture
def make_staff_site(tmp_path, portal):
    """``make(review_mode)``: the app on a fresh SQLite database with its own content folder and one staff account
    of each role (staffsupport.add_accounts)."""
    from staffsupport import add_accounts, content_dir

    made: list[Site] = []

    def make(review_mode: str = "staff") -> Site:
        s = _site(tmp_path, f"sqlite:///{tmp_path}/web.db", portal, content_dir=content_dir(tmp_path),
                  review_mode=review_mode)
        s.accounts = add_accounts(s)
        made.append(s)
        return s

    yield make
    for s in made:
        _close(s, portal)
