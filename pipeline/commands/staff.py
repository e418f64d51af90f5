"""`pipeline staff`: add, list, disable and set passwords of staff accounts. There is no default account."""

from __future__ import annotations

import sys

import click

from pipeline.commands import current
from pipeline.context import parse_at
from pipeline.errors import InputError


def read_secret(prompt: str, *, from_stdin: bool, confirm: bool = False) -> str:
    """One line from standard input (for scripts), or a prompt that does not echo."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError(f"{prompt}: expected a line on standard input (--password-stdin)")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError(f"{prompt}: no terminal to ask on; pass --password-stdin and write it to standard input")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


@click.group()
def staff() -> None:
    """Staff accounts: editors write, reviewers also approve, admins also manage accounts."""


@staff.command("add")
@click.argument("email")
@click.option("--name", required=True, help="The name readers see beside a review.")
@click.option("--role", required=True, help="editor, reviewer or admin.")
@click.option("--credentials", default="", help='Shown after the name, e.g. "MD, medical oncology".')
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of asking.")
def staff_add(email: str, name: str, role: str, credentials: str, password_stdin: bool) -> None:
    """Add a staff account. The password (at least 12 characters) is asked for without echo."""
    from pipeline.editorial import staff as accounts

    c = current()
    if role not in accounts.ROLES:  # before asking for a password that would be thrown away
        raise InputError(f"--role: {role!r} is not a role; use one of: {', '.join(accounts.ROLES)}")
    password = read_secret("Password", from_stdin=password_stdin, confirm=True)
    with c.engine.begin() as conn:
        account = accounts.add(conn, email=email, name=name, role=role, credentials=credentials, password=password,
                               at=parse_at(None))
    click.echo(f"added {account.role} {account.email} ({account.shown_as})")


@staff.command("list")
def staff_list() -> None:
    """Every account: email, role, name and credentials, and whether it is disabled."""
    from pipeline.editorial import staff as accounts

    with current().engine.connect() as conn:
        found = accounts.accounts(conn)
    for a in found:
        flags = " (disabled)" if a.disabled else ""
        flags += " (second factor)" if a.has_totp else ""
        click.echo(f"{a.role:<9} {a.email:<40} {a.shown_as}{flags}")
    if not found:
        click.echo("no staff accounts yet; add one with 'pipeline staff add EMAIL --name … --role reviewer'")


@staff.command("disable")
@click.argument("email")
def staff_disable(email: str) -> None:
    """Disable an account: it can no longer approve or sign in. Its past reviews stay on record."""
    from pipeline.editorial import staff as accounts

    with current().engine.begin() as conn:
        changed = accounts.disable(conn, email, at=parse_at(None))
    click.echo("disabled" if changed else "already disabled")


@staff.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def staff_set_password(email: str, password_stdin: bool) -> None:
    """Set a new password (at least 12 characters) for an account."""
    from pipeline.editorial import staff as accounts

    c = current()
    with c.engine.connect() as conn:
        accounts.require(conn, email)
    password = read_secret("New password", from_stdin=password_stdin, confirm=True)
    with c.engine.begin() as conn:
        accounts.set_password(conn, email, password, at=parse_at(None))
    click.echo("password changed")
