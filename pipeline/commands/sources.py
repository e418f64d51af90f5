"""`pipeline sources`: the outside feeds watched for the inbox (content/sources.yaml) and their health."""

from __future__ import annotations

import sys

import click

from pipeline.commands import AT_HELP, current
from pipeline.context import parse_at


@click.group()
def sources() -> None:
    """Outside feeds watched for the curation inbox (content/sources.yaml)."""


@sources.command("fetch")
@click.argument("source_id", required=False)
@click.option("--now", "force", is_flag=True, help="Fetch even a source that is backing off after failures.")
@click.option("--at", help=AT_HELP)
def sources_fetch(source_id: str | None, force: bool, at: str | None) -> None:
    """Fetch every watched source (or SOURCE_ID) into the inbox. Exits 1 if any source failed."""
    from pipeline.operations import fetch_sources

    report = fetch_sources(current(), at=parse_at(at), only=source_id, force=force)
    for result in report.results:
        click.echo(result.line(), err=result.outcome == "failed")
    for line in report.lines()[len(report.results):]:
        click.echo(line)
    if report.failed:
        sys.exit(1)


@sources.command("list")
def sources_list() -> None:
    """Each watched source with its health: last try, last success, last error and items seen."""
    from pipeline.curation import inbox
    from pipeline.curation.sources import load_sources

    c = current()
    watched, problems = load_sources(c.settings.content_dir, topic_ids=frozenset(c.library().topic_ids))
    for p in problems:
        click.echo(str(p), err=True)
    with c.engine.connect() as conn:
        health = inbox.all_health(conn)
    if not watched:
        click.echo(f"no sources are watched; list them in {c.settings.content_dir / 'sources.yaml'}")
    for s in watched:
        h = health.get(s.id)

        def when(value) -> str:
            return value.isoformat() if value else "never"

        click.echo(f"{s.id}  {s.name}\n    {s.url}")
        click.echo(f"    last try {when(h.last_try_at if h else None)}, last success "
                   f"{when(h.last_success_at if h else None)}, items seen {h.items_seen if h else 0}")
        if h and h.last_error:
            click.echo(f"    last error ({h.failures} in a row): {h.last_error}")
        if h and h.next_try_at:
            click.echo(f"    next try not before {h.next_try_at.isoformat()}")
