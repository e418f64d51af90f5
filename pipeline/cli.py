"""The `pipeline` command: thin wrappers over the stages. Exit 0 on success, 1 on a user error."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.commands import AT_HELP, current
from pipeline.context import Context, parse_at
from pipeline.errors import InputError, PipelineError
from pipeline.settings import load_settings


class _Group(click.Group):
    """Turns every user error into plain lines on stderr and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            for line in exc.lines():
                click.echo(line, err=True)
            ctx.exit(1)
        except click.UsageError as exc:
            exc.exit_code = 1
            raise


_ctx = current

@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """mbc-pipeline: articles become feeds and gentle email digests."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        ctx.obj = Context(load_settings())
        ctx.call_on_close(ctx.obj.close)
    except PipelineError as exc:
        for line in exc.lines():
            click.echo(line, err=True)
        ctx.exit(1)


@cli.command()
@click.option("--at", help=AT_HELP)
def check(at: str | None) -> None:
    """Validate content/ and schedules.yaml; print path:line: field: message for each problem."""
    from pipeline.content.checks import editorial_warnings
    from pipeline.content.frontmatter import parse as parse_fm
    from pipeline.schedules import load_schedule

    c = _ctx()
    when = parse_at(at)
    library, problems = c.loaded
    for article in library.articles:
        lines = parse_fm(Path(article.path).read_text(encoding="utf-8")).key_lines
        problems.extend(editorial_warnings(article, at=when, lines=lines))
    _, schedule_problems = load_schedule(c.settings.schedules, topic_ids=frozenset(library.topic_ids))
    problems.extend(schedule_problems)
    problems.extend(_editorial_problems(c, library, when))
    from pipeline.curation.sources import load_sources

    problems.extend(load_sources(c.settings.content_dir, topic_ids=frozenset(library.topic_ids))[1])
    for p in problems:
        click.echo(str(p), err=True)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    click.echo(f"{len(library.articles)} articles checked: {errors} errors, {warnings} warnings")
    if errors:
        sys.exit(1)


def _editorial_problems(c: Context, library, when) -> list:
    from pipeline.editorial.checks import editorial_problems
    from pipeline.errors import Problem, StoreError

    present = {p.stem for p in c.settings.content_dir.glob("*.md") if p.name.lower() != "readme.md"}
    try:
        with c.engine.connect() as conn:
            return editorial_problems(conn, library, present=present, at=when, mode=c.settings.review_mode,
                                      site_url=c.settings.site_url, postal_address=c.settings.postal_address)
    except StoreError as exc:
        return [Problem(path="PIPELINE_DATABASE_URL", line=1, field="editorial record", severity="warning",
                        message=f"not checked: {exc}")]


@cli.group()
def content() -> None:
    """List, create and queue articles."""


@content.command("list")
@click.option("--status", type=click.Choice(["draft", "review", "approved", "retracted", "live", "queued"]),
              help="Only articles in this state (live and queued are approved articles before/after --at).")
@click.option("--review-due", metavar="DAYS", help="Only live articles whose medical review is due within DAYS "
              "(such as 30d) or overdue, as readers see them.")
@click.option("--at", help=AT_HELP)
def content_list(status: str | None, review_due: str | None, at: str | None) -> None:
    """List articles with their state and publish time."""
    when = parse_at(at)
    if review_due is not None:
        _list_review_due(review_due, when)
        return
    library = _ctx().library()
    for a in sorted(library.articles, key=lambda a: (a.publish_at, a.slug)):
        state = ("live" if a.is_live(when) else "queued") if a.status == "approved" else a.status
        if status and status not in (state, a.status):
            continue
        click.echo(f"{state:<9} {a.publish_at.isoformat():<25} {a.slug}  [{', '.join(a.topics)}]")


def _list_review_due(within: str, when) -> None:
    import re
    from datetime import timedelta

    from pipeline.content.checks import next_review_due
    from pipeline.editorial.checks import review_due
    from pipeline.errors import InputError
    from pipeline.operations import publishing_library

    m = re.fullmatch(r"\s*(\d{1,4})\s*d?\s*", within)
    if not m:
        raise InputError(f"--review-due: {within!r} is not a number of days; write e.g. 30d")
    library = publishing_library(_ctx(), at=when)
    for a, overdue in review_due(list(library.articles), at=when, within=timedelta(days=int(m.group(1)))):
        due = next_review_due(a.reviewed_on)
        state = "overdue" if overdue else "due"
        click.echo(f"{state:<8} {due.isoformat()}  {a.slug}  (reviewed by {a.reviewed_by} on {a.reviewed_on})")


@content.command("new")
@click.option("--title", prompt="Title", help="The article's title.")
@click.option("--topics", prompt="Topic ids (separated by ;)", help="Topic ids separated by ';'.")
@click.option("--slug", help="File name without .md (default: from the title).")
@click.option("--author", default="", help="Who wrote it.")
@click.option("--at", help="Planned publish time (ISO 8601). Default: now.")
def content_new(title: str, topics: str, slug: str | None, author: str, at: str | None) -> None:
    """Create a draft article from a template."""
    from pipeline.content.editor import new_article

    c = _ctx()
    path = new_article(c.settings.content_dir, title=title, topics=[t.strip() for t in topics.split(";") if t.strip()],
                       at=parse_at(at), author=author, slug=slug)
    click.echo(f"created {path} (status: draft). Add sources, then ask a medical reviewer to review it.")


@content.command("queue")
@click.argument("slug")
@click.option("--at", required=True, help="When the article goes live (ISO 8601 with offset).")
def content_queue(slug: str, at: str) -> None:
    """Schedule SLUG. Refused without a medical review (in staff review mode: a reviewer account's approval of
    its current text, which is then written into reviewed_by and reviewed_on) and a source."""
    from pipeline.commands.review import queue_review
    from pipeline.content.editor import queue_article
    from pipeline.operations import record_content

    c = _ctx()
    review = queue_review(c, slug)
    path = queue_article(c.settings.content_dir, slug, at=parse_at(at), review=review)
    c.__dict__.pop("loaded", None)  # read the file again, as queued
    record_content(c, at=parse_at(None))
    click.echo(f"queued {path} for {parse_at(at).isoformat()}")


@cli.group()
def feeds() -> None:
    """Build the RSS, Atom and JSON feeds and their pages."""


@feeds.command("build")
@click.option("--at", help=AT_HELP)
def feeds_build(at: str | None) -> None:
    """Write feeds, article pages and index.html under PIPELINE_PUBLIC_DIR."""
    from pipeline.operations import build_feeds

    report = build_feeds(_ctx(), at=parse_at(at))
    click.echo(report.summary())


@cli.group()
def subscribers() -> None:
    """Import and export subscribers."""


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--consented", is_flag=True, help="You hold these people's consent: import them as confirmed.")
def subscribers_import(file: Path, consented: bool) -> None:
    """Import FILE.csv (email,name,topics,cadence,timezone). Bad rows are reported by line."""
    from functools import partial

    from pipeline.delivery.factory import address_problem
    from pipeline.subscribers.importer import import_csv

    c = _ctx()
    report = import_csv(c.engine, file, topic_ids=frozenset(c.library().topic_ids), at=parse_at(None), consented=consented,
                        address_problem=partial(address_problem, c.settings))
    for p in report.problems:
        click.echo(str(p), err=True)
    errors = sum(p.severity == "error" for p in report.problems)
    click.echo(f"imported {report.created} new, updated {report.updated}, rejected {errors} rows, "
               f"{report.left_alone_line()}")
    if errors:
        sys.exit(1)


@subscribers.command("export")
@click.option("--out", type=click.Path(path_type=Path), help="Write to this file instead of standard output.")
def subscribers_export(out: Path | None) -> None:
    """Write all subscribers as CSV: the import columns, then status, consent and suppression. Cells a spreadsheet
    would run as formulas start with an apostrophe (import takes it off)."""
    from pipeline.subscribers import repository
    from pipeline.subscribers.csvio import format_rows

    c = _ctx()
    with c.engine.connect() as conn:
        lines = format_rows(repository.export_rows(conn))
        if out:
            with open(out, "w", encoding="utf-8", newline="") as fh:
                fh.writelines(lines)
        else:
            for line in lines:
                click.echo(line, nl=False)


@cli.group()
def digest() -> None:
    """Preview and send email digests."""


@digest.command("preview")
@click.argument("name")
@click.option("--at", help=AT_HELP)
@click.option("--topics", help="Preview as a subscriber of these topic ids (separated by ;).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="HTML file to write.")
def digest_preview(name: str, at: str | None, topics: str | None, out: Path) -> None:
    """Render the issue of NAME for the period containing --at, as one subscriber would see it."""
    from pipeline.operations import preview_digest

    chosen = tuple(t.strip() for t in topics.split(";") if t.strip()) if topics else ()
    summary = preview_digest(_ctx(), name, at=parse_at(at), topics=chosen, out=out)
    click.echo(summary)


@digest.command("send")
@click.argument("name")
@click.option("--at", help=AT_HELP)
@click.option("--dry-run", is_flag=True, help="Show the plan; send and store nothing.")
@click.option("--force", is_flag=True,
              help="Send even though --at is in the future (to test an issue early). The issue stays open until its "
                   "period has ended.")
def digest_send(name: str, at: str | None, dry_run: bool, force: bool) -> None:
    """Send the issue of NAME for the latest fire time at or before --at. Safe to re-run."""
    from pipeline.operations import future_send_problem, send_digest

    when = parse_at(at)
    if not dry_run and (problem := future_send_problem(name, at=when, now=datetime.now(UTC), force=force)):
        raise InputError(problem)
    report = send_digest(_ctx(), name, at=when, dry_run=dry_run)
    click.echo(report.summary())
    for line in report.problems:  # exit 1 unless every recipient is sent, dropped or failed for their own reason
        click.echo(line, err=True)
    if report.problems:
        sys.exit(1)


# --- delivery: digest status (owned by the delivery work; keep this block together) ------------------------------

@digest.command("status")
@click.argument("name")
@click.option("--at", help=AT_HELP)
def digest_status(name: str, at: str | None) -> None:
    """Show how many recipients of the issue of NAME are pending, in flight, sent, failed, suppressed or unknown."""
    from pipeline.operations import digest_status as status

    click.echo(status(_ctx(), name, at=parse_at(at)).summary())

# --- end delivery: digest status ---------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the web app (subscribe, preferences, feeds, webhooks) and the outbox sender."""
    from pipeline.delivery.outbox_sender import OutboxSender
    from pipeline.web.server import serve as run_server

    ctx = _ctx()
    sender = OutboxSender(ctx.engine, ctx.settings).start()  # the pages only queue their email; this sends it
    try:
        run_server(ctx, host=host, port=port)
    finally:
        sender.stop()


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Build the feeds, then run the scheduler and the web app until Ctrl-C."""
    from pipeline.scheduling.runner import run_forever

    run_forever(_ctx(), host=host, port=port)


# --- delivery: suppressions (owned by the delivery work; keep this block together) -----------------------------

SUPPRESSION_REASONS = ("manual", "deceased", "bounce", "spamreport", "unsubscribe", "complaint")


@cli.group()
def suppressions() -> None:
    """The suppression list: addresses that are never mailed again."""


@suppressions.command("list")
def suppressions_list() -> None:
    """Print every suppressed address with its reason, source and time (tab-separated)."""
    from pipeline.subscribers import repository

    with _ctx().engine.connect() as conn:
        for row in repository.suppression_list(conn):
            click.echo(f"{row.email_key}\t{row.reason}\t{row.source}\t{row.created_at.isoformat()}\t{row.detail}")


@suppressions.command("add")
@click.argument("email")
@click.option("--reason", type=click.Choice(SUPPRESSION_REASONS), default="manual", show_default=True,
              help="Why: 'deceased' gently stops all mail for someone who has died.")
@click.option("--detail", default="", help="A note for operators (stored, never logged).")
def suppressions_add(email: str, reason: str, detail: str) -> None:
    """Stop all mail to EMAIL, from the next batch on."""
    from pipeline.delivery.suppressions import add

    added = add(_ctx().engine, email, reason=reason, detail=detail, at=parse_at(None))
    click.echo("suppressed" if added else "already suppressed")


@suppressions.command("remove")
@click.argument("email")
def suppressions_remove(email: str) -> None:
    """Allow mail to EMAIL again (it still needs a confirmed subscription)."""
    from pipeline.delivery.suppressions import remove

    click.echo("removed" if remove(_ctx().engine, email) else "not on the list")

# --- end delivery: suppressions ----------------------------------------------------------------------------------


# Command groups kept in their own modules (pipeline/commands/), one line each.
from pipeline.commands import audit as _audit  # noqa: E402
from pipeline.commands import review as _review  # noqa: E402
from pipeline.commands import staff as _staff  # noqa: E402
from pipeline.commands.backup import backup as _backup  # noqa: E402
from pipeline.commands.inbox import inbox as _inbox  # noqa: E402
from pipeline.commands.outbox import outbox as _outbox  # noqa: E402
from pipeline.commands.sources import sources as _sources  # noqa: E402

cli.add_command(_backup)
cli.add_command(_staff.staff)
cli.add_command(_audit.audit)
content.add_command(_review.content_import)
content.add_command(_review.content_approve)
content.add_command(_review.content_request_changes)
cli.add_command(_sources)
cli.add_command(_inbox)
cli.add_command(_outbox)


def main() -> None:
    try:
        code = cli.main(prog_name="pipeline", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
