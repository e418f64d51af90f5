"""What every entry point needs: settings, the database, the content and the schedule, loaded once and lazily."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy.engine import Engine

from pipeline.content.loader import load_library
from pipeline.content.model import Library
from pipeline.errors import ContentError, InputError, Problem
from pipeline.schedules import Schedule, require_schedule
from pipeline.settings import Settings

log = logging.getLogger("pipeline")


def parse_at(value: str | None, *, now: datetime | None = None) -> datetime:
    """``--at`` as an aware datetime; the CLI's default is the current time."""
    if value is None:
        return now or datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--at: {value!r} is not ISO 8601; write e.g. 2026-11-23T08:00:00-05:00") from None
    if parsed.tzinfo is None:
        raise InputError(f"--at: {value!r} has no UTC offset; add one, e.g. {value}Z or {value}-05:00")
    return parsed


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        from pipeline.store.engine import make_engine

        return make_engine(self.settings.database_url)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.__dict__.pop("engine").dispose()

    @cached_property
    def loaded(self) -> tuple[Library, list[Problem]]:
        return load_library(self.settings.content_dir)

    def library(self, *, strict: bool = False) -> Library:
        """The library. Broken articles are logged and left out, or raise when ``strict``."""
        library, problems = self.loaded
        errors = [p for p in problems if p.severity == "error"]
        if errors and (strict or not library.topics):
            raise ContentError(errors)
        for p in errors:
            log.warning("%s (article skipped)", p, extra={"action": "article_skipped"})
        return library

    @cached_property
    def schedule(self) -> Schedule:
        return require_schedule(self.settings.schedules, topic_ids=frozenset(self.library().topic_ids))
