"""One scheduler per job store: APScheduler 3 gives duplicate or missed runs when two share one."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from pipeline.errors import ConfigError

# One lock per schema, so separate installations sharing a database server do not block each other.
_PG_KEY = "SELECT {fn}(hashtext(current_schema() || '/mbc-pipeline-scheduler'))"


@contextmanager
def single_scheduler(engine: Engine, var_dir: Path):
    """Hold an exclusive lock for as long as the scheduler runs, or raise if another one holds it."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        got = False
        try:
            got = conn.execute(text(_PG_KEY.format(fn="pg_try_advisory_lock"))).scalar()
            conn.commit()
            if not got:
                raise ConfigError("another scheduler is already running on this database; run one 'pipeline run' only "
                                  "(extra workers may run 'pipeline digest send')")
            yield
        finally:
            if got:  # session locks outlive a pooled connection's return, so release explicitly
                conn.execute(text(_PG_KEY.format(fn="pg_advisory_unlock")))
                conn.commit()
            conn.close()
        return
    db = engine.url.database
    lock_path = Path(db + ".scheduler.lock") if db and db != ":memory:" else var_dir / "scheduler.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another scheduler is already running (lock {lock_path}); "
                              "stop it before starting a second one") from None
        yield
    finally:
        os.close(fd)
