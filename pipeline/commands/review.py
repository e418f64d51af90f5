"""`pipeline content import|approve|request-changes`: revisions from content/ and the reviews that name them."""

from __future__ import annotations

import click

from pipeline.commands import AT_HELP, current
from pipeline.commands.staff import read_secret
from pipeline.context import Context, parse_at
from pipeline.errors import InputError, NotFound


def _actor_for(c: Context, email: str | None) -> str | None:
    from pipeline.editorial import staff

    if email is None:
        return None
    with c.engine.connect() as conn:
        account = staff.require(conn, email)
    if account.disabled:
        raise InputError(f"--as: the account {email} is disabled")
    return account.actor


@click.command("import")
@click.option("--as", "as_email", metavar="EMAIL", help="Credit new revisions to this staff account (default: the file).")
@click.option("--at", help=AT_HELP)
def content_import(as_email: str | None, at: str | None) -> None:
    """Record content/ as revisions: each file whose text matches no stored revision becomes a new one.
    Never changes a file. The feed job does the same before each build."""
    from pipeline.operations import record_content

    c = current()
    report = record_content(c, at=parse_at(at), author=_actor_for(c, as_email))
    click.echo(report.summary())
    for slug, hash_, why in report.waiting:
        click.echo(f"waiting   {slug}  revision {hash_[:12]}: {why}")


def _current_revision(c: Context, slug: str, at) -> str:
    """The hash of the text in content/<slug>.md, recorded first; else the slug's newest stored revision."""
    from pipeline.editorial import record
    from pipeline.editorial.canonical import revision_of
    from pipeline.operations import record_content

    record_content(c, at=at)
    article = next((a for a in c.library().articles if a.slug == slug), None)
    if article is not None:
        return revision_of(article).hash
    with c.engine.connect() as conn:
        stored = record.revisions_of(conn, slug)
    if not stored:
        raise NotFound(f"{slug}: no such article; see 'pipeline content list'")
    return stored[-1].hash


def _review(slug: str, as_email: str, note: str, password_stdin: bool, revision: str | None, at: str | None,
            verdict: str) -> None:
    from pipeline.editorial import review, staff

    c = current()
    when = parse_at(at)
    target = revision or _current_revision(c, slug, when)
    shown = review.preview(c.engine, slug, revision_hash=target, mode=c.settings.review_mode)
    click.echo(f"{slug}: revision {shown.revision.hash}")
    if shown.last_approved and shown.last_approved.hash == shown.revision.hash:
        click.echo("(this is the text approved last)")
    for line in shown.diff:
        click.echo(line)
    if verdict == "approved" and shown.already_approved:
        click.echo(f"{slug}: revision {shown.revision.hash[:12]} is already approved by a reviewer; nothing to do")
        return
    with c.engine.connect() as conn:
        account = staff.find(conn, as_email)
    password = read_secret(f"Password for {as_email}", from_stdin=password_stdin)
    code = None
    if account is not None and account.has_totp:
        code = read_secret("One-time code", from_stdin=password_stdin)
    who = review.decide(c.engine, slug=slug, revision_hash=shown.revision.hash, verdict=verdict, email=as_email,
                        password=password, code=code, note=note, at=when)
    if verdict == "approved":
        click.echo(f"approved {slug} revision {shown.revision.hash[:12]} as reviewed by {who.shown_as} "
                   f"on {when.date().isoformat()}")
        with c.engine.connect() as conn:
            from pipeline.editorial.record import publication

            pub = publication(conn, slug)
        if pub is None or pub.state != "scheduled":
            click.echo(f"not scheduled yet: run 'pipeline content queue {slug} --at …' to publish it")
        else:
            click.echo("readers see it from the next feed build" if pub.publish_at <= when else
                       f"it goes live at {pub.publish_at.isoformat()}")
    else:
        click.echo(f"asked for changes to {slug} revision {shown.revision.hash[:12]}; readers still see the last "
                   "approved text")


_revision_option = click.option("--revision", help="The revision's hash (or its first 8+ digits). "
                                                   "Default: the text in content/SLUG.md now.")


@click.command("approve")
@click.argument("slug")
@click.option("--as", "as_email", required=True, metavar="EMAIL", help="The reviewer's staff account.")
@click.option("--note", default="", help="A note kept with the review.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password (and then the one-time code, if the account has one) from standard input.")
@_revision_option
@click.option("--at", help=AT_HELP)
def content_approve(slug: str, as_email: str, note: str, password_stdin: bool, revision: str | None,
                    at: str | None) -> None:
    """Approve exactly one revision of SLUG: shows its hash and what changed since the last approved text,
    then asks for the reviewer's password. Only a reviewer account, and never for its own revision."""
    _review(slug, as_email, note, password_stdin, revision, at, "approved")


@click.command("request-changes")
@click.argument("slug")
@click.option("--as", "as_email", required=True, metavar="EMAIL", help="The reviewer's staff account.")
@click.option("--note", required=True, help="What needs to change.")
@click.option("--password-stdin", is_flag=True, help="Read the password (and one-time code) from standard input.")
@_revision_option
@click.option("--at", help=AT_HELP)
def content_request_changes(slug: str, as_email: str, note: str, password_stdin: bool, revision: str | None,
                            at: str | None) -> None:
    """Record that a revision of SLUG needs changes. The last approved text stays live."""
    if not note.strip():
        raise InputError("--note: say what needs to change")
    _review(slug, as_email, note, password_stdin, revision, at, "changes_requested")


def queue_review(c: Context, slug: str):
    """For `content queue`: the reviewer account's approval of SLUG's current text, as (shown name, date), or
    None when none exists (attested mode then relies on the front matter). In staff mode one is required."""
    from pipeline.editorial import record
    from pipeline.editorial.canonical import revision_of

    article = next((a for a in c.library().articles if a.slug == slug), None)
    if article is None:
        if c.settings.review_mode == "staff":
            raise NotFound(f"content/{slug}.md: no such article, or it has errors; run 'pipeline check'")
        return None
    current_hash = revision_of(article).hash
    with c.engine.connect() as conn:
        staff_approvals = [r for r in record.reviews_of(conn, slug)
                           if r.kind == "staff" and r.verdict == "approved" and r.revision == current_hash]
    if staff_approvals:
        return staff_approvals[-1].reviewer, staff_approvals[-1].reviewed_on
    if c.settings.review_mode == "staff":
        raise InputError(f"content/{slug}.md: not queued: no reviewer has approved its current text "
                         f"(revision {current_hash[:12]}); ask one to run 'pipeline content approve {slug} --as EMAIL'")
    return None
