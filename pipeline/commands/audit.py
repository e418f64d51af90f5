"""`pipeline audit`: the editorial audit log, oldest first."""

from __future__ import annotations

import json

import click

from pipeline.commands import current
from pipeline.context import parse_at


@click.command("audit")
@click.option("--slug", help="Only this article.")
@click.option("--since", help="Only entries at or after this time (ISO 8601 with offset).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def audit(slug: str | None, since: str | None, as_json: bool) -> None:
    """Print the editorial audit log: revisions, reviews, schedules, publications, retractions, staff changes."""
    from pipeline.editorial import audit as log
    from pipeline.editorial import staff

    c = current()
    with c.engine.connect() as conn:
        found = log.entries(conn, slug=slug, since=parse_at(since) if since else None)
        names = {a.actor: a.shown_as for a in staff.accounts(conn)}
    for e in found:
        if as_json:
            data = e.as_json()
            if e.actor in names:
                data["actor_name"] = names[e.actor]
            click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))
            continue
        who = f"{e.actor} ({names[e.actor]})" if e.actor in names else e.actor
        what = " ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))
        click.echo(f"{e.at.isoformat()}  {e.event:<17} {e.slug or '-':<40} {(e.revision or '-')[:12]:<12} {who}"
                   + (f"  {what}" if what else ""))
