"""`pipeline backup FILE`: a consistent copy of the SQLite database while the service runs."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.commands import current


@click.command("backup")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def backup(file: Path) -> None:
    """Copy the SQLite database to FILE in one consistent snapshot (safe while `pipeline run` works).

    On PostgreSQL, use pg_dump instead; the README's Backups section shows how to restore either."""
    from pipeline.store.backup import backup as take

    click.echo(take(current().settings.database_url, file).summary())
