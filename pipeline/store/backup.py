"""A consistent copy of the embedded SQLite database, taken while the service runs (SQLite's online backup API)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from pipeline.errors import InputError, StoreError


@dataclass(frozen=True, kw_only=True)
class Backup:
    path: Path
    size: int
    revision: str | None

    def summary(self) -> str:
        schema = f", schema {self.revision}" if self.revision else ""
        return f"backed up the database to {self.path} ({self.size:,} bytes{schema}; integrity check ok)"


def backup(database_url: str, dest: Path) -> Backup:
    """Copy the SQLite database at ``database_url`` to ``dest`` in one snapshot, check the copy, then put it in
    place atomically (an existing file at ``dest`` is replaced only by a good copy)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise InputError("pipeline backup: PIPELINE_DATABASE_URL is PostgreSQL; back it up with pg_dump "
                         "(for example `pg_dump --format=custom --file=pipeline.dump DBNAME`; see the README's Backups)")
    if not url.database or url.database == ":memory:":
        raise InputError("pipeline backup: PIPELINE_DATABASE_URL names no database file")
    source = Path(url.database)
    if not source.is_file():
        raise StoreError(f"pipeline backup: there is no database at {source} yet; nothing to back up")
    dest = Path(dest)
    if dest.exists() and dest.resolve() == source.resolve():
        raise InputError(f"pipeline backup: {dest} is the live database itself; name another file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(tmp)
            try:
                # One step (pages=-1): a single read transaction, so the copy is one snapshot. In WAL mode that
                # never blocks the service's writers, and no concurrent write can make the copy start again.
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
                ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
                revision = _revision(dst)
            finally:
                dst.close()
        finally:
            src.close()
        if ok != "ok":
            raise StoreError(f"pipeline backup: the copy failed SQLite's integrity check ({ok}); the database at "
                             f"{source} may be damaged; nothing was written to {dest}")
        os.chmod(tmp, 0o600)  # it holds subscribers' addresses
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Backup(path=dest, size=dest.stat().st_size, revision=revision)


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None
