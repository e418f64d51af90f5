"""The right to run the scheduler, one holder per database: APScheduler 3 gives duplicate or missed runs when two
schedulers share one job store. Whoever does not hold it stands by."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("pipeline.scheduling")

# One lock per schema, so separate installations sharing a database server do not block each other.
_PG_KEY = "SELECT {fn}(hashtext(current_schema() || '/mbc-pipeline-scheduler'))"
APPLICATION_NAME = "mbc-pipeline scheduler lock"


class SchedulerLock:
    """Exclusive, and given up by the operating system or the database server when its holder dies: a file lock
    on SQLite (released when the process ends, kill -9 included), a session advisory lock on PostgreSQL (released
    when the session's connection ends, so a holder whose connection dropped has lost it: see ``held``)."""

    def __init__(self, engine: Engine, var_dir: Path):
        self.engine = engine
        self.var_dir = var_dir
        self._fd: int | None = None
        self._conn: Connection | None = None
        self.backend_pid: int | None = None  # PostgreSQL: the session that holds the lock

    @property
    def where(self) -> str:
        if self.engine.dialect.name == "postgresql":
            return "this database's advisory lock"
        return str(self._path())

    def _path(self) -> Path:
        db = self.engine.url.database
        return Path(db + ".scheduler.lock") if db and db != ":memory:" else self.var_dir / "scheduler.lock"

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        if self.engine.dialect.name == "postgresql":
            return self._try_postgresql()
        path = self._path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _try_postgresql(self) -> bool:
        conn = self.engine.connect()
        try:
            conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": APPLICATION_NAME})
            got = bool(conn.execute(text(_PG_KEY.format(fn="pg_try_advisory_lock"))).scalar())
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            conn.commit()
        except Exception:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn, self.backend_pid = conn, pid
        return True

    def held(self) -> bool:
        """Whether we still hold it. On PostgreSQL, asks over the lock's own connection: if that connection
        dropped, the server has already released the lock and another scheduler may hold it now."""
        if self._fd is not None:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure of that connection means the lock is gone
            log.warning("the scheduler lock's database connection failed (%s)", type(exc).__name__,
                        extra={"action": "scheduler_lock_lost"})
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = self.backend_pid = None
            return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                # Session locks outlive a pooled connection's return, so release explicitly.
                self._conn.execute(text(_PG_KEY.format(fn="pg_advisory_unlock")))
                self._conn.commit()
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = self.backend_pid = None
