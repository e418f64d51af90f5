"""Shared fixtures: databases (SQLite and PostgreSQL), settings, content and schedules for tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from pipeline.content.loader import load_library
from pipeline.content.model import Library
from pipeline.schedules import Schedule, require_schedule
from pipeline.settings import Settings
from pipeline.store.engine import make_engine
from pipeline.subscribers import repository

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
POSTGRES_URL = os.environ.get("PIPELINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "test-secret-key-do-not-use-0123456789"


def services_required() -> bool:
    return os.environ.get("PIPELINE_REQUIRE_SERVICES") == "1"


def _postgres_schema_url() -> tuple[str, Callable[[], None]]:
    """A fresh schema on the test server; returns its URL and a function that drops it."""
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure to reach the server
        admin.dispose()
        message = f"PostgreSQL not reachable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if services_required():
            pytest.fail(message + " (PIPELINE_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty database, once per kind: a temporary SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pipeline.db'}"
        return
    url, drop = _postgres_schema_url()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def make_db(database_url) -> Iterator[Callable[[], Engine]]:
    """Engines on the test database (migrated); call it again for a second worker's engine."""
    engines: list[Engine] = []

    def factory() -> Engine:
        engine = make_engine(database_url)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.fixture
def engine(make_db) -> Engine:
    return make_db()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        secret_key=SECRET,
        site_url="https://digest.example.org",
        sender="MBC Digest <digest@example.org>",
        postal_address="MBC Digest, 123 Example Street, Example City, EX 00000, USA",
        outbox=tmp_path / "outbox",
        public_dir=tmp_path / "public",
        templates_dir=ROOT / "templates",
        var_dir=tmp_path / "var",
        database_url="sqlite:///unused.db",
    )


@pytest.fixture(scope="session")
def digest_library() -> Library:
    library, problems = load_library(FIXTURES / "digest_content")
    assert not [p for p in problems if p.severity == "error"], problems
    return library


@pytest.fixture(scope="session")
def digest_schedule(digest_library) -> Schedule:
    return require_schedule(FIXTURES / "digest_schedules.yaml", topic_ids=frozenset(digest_library.topic_ids))


@pytest.fixture
def add_subscriber(engine) -> Callable[..., int]:
    """Insert a subscriber (confirmed by default); returns the id."""

    def add(email: str, *, topics: tuple[str, ...] = (), cadence: str = "weekly", status: str = "confirmed",
            at: datetime = datetime(2026, 10, 1, tzinfo=UTC)) -> int:
        with engine.begin() as conn:
            sid, _ = repository.upsert(conn, email=email, name="", topics=topics, cadence=cadence, timezone="UTC",
                                       at=at, status=status, consent_source="test")
        return sid

    return add
