"""`pipeline outbox status|send`: the emails that are not digests (confirmation, welcome, ...), as the web pages
queued them. `pipeline run` sends them by itself; `send` is for operators who run commands from cron."""

from __future__ import annotations

import sys
from collections import Counter

import click

from pipeline.commands import AT_HELP, current
from pipeline.context import parse_at


@click.group()
def outbox() -> None:
    """Emails waiting to go out (confirmations, welcomes, ...): what is pending, sent, failed or dropped."""


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s / 3600:.1f} h"


@outbox.command("status")
@click.option("--at", help=AT_HELP)
def outbox_status(at: str | None) -> None:
    """Counts of pending, sent, failed and dropped messages, the oldest pending one's age, and why any failed."""
    from pipeline.delivery import outbox as store

    now = parse_at(at)
    with current().engine.connect() as conn:
        st = store.status(conn)
    c = st.counts
    click.echo(f"pending {c['pending']}, sent {c['sent']}, failed {c['failed']}, dropped {c['dropped']}")
    age = st.oldest_age(now)
    click.echo("oldest pending: " + ("none" if age is None else f"{_age(age)} old"))
    for state, reason, n in st.reasons:
        click.echo(f"  {state} ({n}): {reason}")


@outbox.command("send")
def outbox_send() -> None:
    """Try every pending message once now (those waiting for a retry too), then report. Exits 1 if any is left
    waiting or failed. Messages older than 24 hours are dropped, never sent."""
    from pipeline.delivery import outbox as store
    from pipeline.delivery.outbox_sender import OutboxSender

    ctx = current()
    done = OutboxSender(ctx.engine, ctx.settings).run_once(waiting_too=True)
    click.echo(f"sent {done.sent}, failed {done.failed}, to try again {done.retrying}, dropped {done.dropped}")
    for reason, n in Counter(done.failures).most_common():
        click.echo(f"  failed ({n}): {reason}")
    with ctx.engine.connect() as conn:
        st = store.status(conn)
    pending = st.counts["pending"]
    if pending:
        click.echo(f"{pending} message(s) still waiting; `pipeline run` (or the next `outbox send`) tries them again:")
        for state, reason, n in st.reasons:
            if state == "pending":
                click.echo(f"  {reason} ({n})")
    if pending or done.failed:
        sys.exit(1)
