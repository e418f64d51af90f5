"""Values an installation makes once and keeps with its database: the same for every machine and every later
setting. The feed-id namespace is one: feed items keep their ids whatever PIPELINE_SITE_URL becomes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pipeline.store.tables import site_keys

FEED_ID_NAMESPACE = "feed_id_namespace"


def kept(engine: Engine, name: str, make, *, at: datetime) -> str:
    """The value stored under ``name``, made with ``make()`` and stored on first use at ``at`` (the first writer
    wins)."""
    with engine.connect() as conn:
        found = conn.execute(select(site_keys.c.value).where(site_keys.c.name == name)).scalar()
    if found is not None:
        return found
    try:
        with engine.begin() as conn:
            conn.execute(insert(site_keys).values(name=name, value=make(), created_at=at))
    except IntegrityError:
        pass  # another process made it first: theirs is the one
    with engine.connect() as conn:
        return conn.execute(select(site_keys.c.value).where(site_keys.c.name == name)).scalar_one()


def feed_id_namespace(engine: Engine, *, at: datetime) -> uuid.UUID:
    return uuid.UUID(kept(engine, FEED_ID_NAMESPACE, lambda: str(uuid.uuid4()), at=at))
