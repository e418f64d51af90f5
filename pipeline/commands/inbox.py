"""`pipeline inbox`: candidates fetched from watched sources, to promote to a draft article or dismiss."""

from __future__ import annotations

import json

import click

from pipeline.commands import AT_HELP, current
from pipeline.context import parse_at


@click.group()
def inbox() -> None:
    """The curation inbox: outside items waiting for an editor."""


@inbox.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line: id, title, url, sources, published, …")
@click.option("--all", "everything", is_flag=True, help="Include dismissed and promoted candidates.")
def inbox_list(as_json: bool, everything: bool) -> None:
    """Candidates nobody has acted on yet, oldest first. Titles are the outside ones, as plain text."""
    from pipeline.curation import inbox as store

    states = ("new", "dismissed", "promoted") if everything else ("new",)
    with current().engine.connect() as conn:
        found = store.candidates(conn, states=states)
    for cand in found:
        if as_json:
            click.echo(json.dumps(cand.as_json(), ensure_ascii=False))
            continue
        day = cand.published.date().isoformat() if cand.published else "undated   "
        state = "" if cand.state == "new" else f" ({cand.state}{' as ' + cand.slug if cand.slug else ''})"
        click.echo(f"{cand.id:>5}  {day}  [{', '.join(cand.sources)}]  {cand.title or '(no title)'}{state}")
        click.echo(f"       {cand.url}")
    if not as_json and not found:
        click.echo("the inbox is empty; `pipeline sources fetch` looks for new items")


@inbox.command("dismiss")
@click.argument("candidate_id", type=int)
@click.option("--at", help=AT_HELP)
def inbox_dismiss(candidate_id: int, at: str | None) -> None:
    """Set candidate CANDIDATE_ID aside; it will not come back."""
    from pipeline.curation import inbox as store

    with current().engine.begin() as conn:
        store.dismiss(conn, candidate_id, at=parse_at(at))
    click.echo(f"dismissed {candidate_id}")


@inbox.command("promote")
@click.argument("candidate_id", type=int)
@click.option("--slug", required=True, help="The new article's file name, without .md.")
@click.option("--topics", help="Topic ids separated by ';' (default: the topics of the sources that carried it).")
@click.option("--at", help=AT_HELP)
def inbox_promote(candidate_id: int, slug: str, topics: str | None, at: str | None) -> None:
    """Write content/SLUG.md as a draft pointing to the original; you then write its title and summary."""
    from pipeline.curation import inbox as store
    from pipeline.curation.promote import write_draft
    from pipeline.curation.sources import load_sources
    from pipeline.errors import InputError

    c = current()
    when = parse_at(at)
    library = c.library()
    chosen = [t.strip() for t in topics.split(";") if t.strip()] if topics else None
    unknown = [t for t in chosen or () if t not in library.topic_ids]
    if unknown:
        raise InputError(f"--topics: unknown {', '.join(unknown)}; use ids from {c.settings.content_dir / 'topics.yaml'}")
    watched, _ = load_sources(c.settings.content_dir, topic_ids=frozenset(library.topic_ids))
    # One transaction: if the file cannot be written, the candidate stays in the inbox.
    with c.engine.begin() as conn:
        candidate = store.get(conn, candidate_id)
        store.mark_promoted(conn, candidate, slug=slug, at=when)
        path = write_draft(c.settings.content_dir, candidate, slug=slug, sources=watched, topics=chosen, at=when)
    click.echo(f"created {path} (status: draft). Write its title and summary in plain language, then set "
               "status: review and ask a medical reviewer to read it.")
