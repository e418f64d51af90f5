"""Admin pages: add and disable staff accounts, reset a second factor, read the audit log with filters."""

from __future__ import annotations

from datetime import datetime, timedelta

from starlette.responses import Response

from pipeline.editorial import audit, sessions, staff
from pipeline.errors import InputError, NotFound
from pipeline.web.staff.common import Call, Staff, field

AUDIT_PAGE = 200


async def accounts(s: Staff, call: Call, *, errors: dict | None = None, form: dict | None = None,
                   notice: str | None = None, status: int = 200) -> Response:
    found = await s.web.db(staff.accounts)
    return s.render(call.request, "accounts.html.j2", {
        "accounts": found, "roles": staff.ROLES, "errors": errors or {}, "notice": notice,
        "form": form or {"email": "", "name": "", "role": "editor", "credentials": ""}}, call=call, status=status)


async def add(s: Staff, call: Call) -> Response:
    form = {k: field(call.form, k, 400) for k in ("email", "name", "role", "credentials")}
    password = field(call.form, "password", 1100)
    try:
        made = await s.web.db(lambda conn: staff.add(conn, email=form["email"], name=form["name"], role=form["role"],
                                                     credentials=form["credentials"], password=password,
                                                     at=call.at, actor=call.account.actor))
    except InputError as exc:
        text = str(exc)
        key = {"EMAIL": "email", "--role": "role", "--name": "name", "--credentials": "credentials",
               "password": "password"}.get(text.split(":", 1)[0], "email")
        if "already exists" in text:
            key = "email"
        return await accounts(s, call, errors={key: text.split(": ", 1)[-1]}, form=form, status=400)
    return await accounts(s, call, notice=f"Added {made.role} {made.name}. Give them their password in person "
                                          "or by phone; reviewers and admins set up a second factor at first login.")


async def _by_id(s: Staff, call: Call) -> staff.Account | None:
    try:
        wanted = int(field(call.form, "account", 12))
    except ValueError:
        return None
    return await s.web.db(lambda conn: staff.by_id(conn, wanted))


async def disable(s: Staff, call: Call) -> Response:
    target = await _by_id(s, call)
    if target is None:
        return await accounts(s, call, notice="No such account; nothing was changed.", status=404)
    if target.id == call.account.id:
        return await accounts(s, call, notice="You can't disable your own account; ask another admin.", status=400)

    def run(conn):
        changed = staff.disable(conn, target.email, at=call.at, actor=call.account.actor)
        sessions.end_all(conn, target.id)
        return changed

    changed = await s.web.db(run)
    return await accounts(s, call, notice=f"Disabled {target.name}; their sessions have ended." if changed
                          else f"{target.name} was already disabled.")


async def reset_factor(s: Staff, call: Call) -> Response:
    target = await _by_id(s, call)
    if target is None:
        return await accounts(s, call, notice="No such account; nothing was changed.", status=404)

    def run(conn):
        staff.set_totp(conn, target.email, None, at=call.at, actor=call.account.actor)
        sessions.end_all(conn, target.id)

    await s.web.db(run)
    return await accounts(s, call, notice=f"Reset {target.name}'s second factor and ended their sessions. "
                                          "They set up a new one at their next login.")


async def audit_log(s: Staff, call: Call) -> Response:
    q = call.request.query_params
    slug, event, actor = q.get("slug", "")[:120].strip(), q.get("event", "")[:40], q.get("actor", "")[:200].strip()
    since_raw = q.get("since", "")[:10]
    error = None
    since = None
    if since_raw:
        try:
            since = datetime.fromisoformat(since_raw).replace(tzinfo=call.at.tzinfo)
        except ValueError:
            error = "Enter the date as YYYY-MM-DD."
    since = since or call.at - timedelta(days=90)
    if event and event not in audit.EVENTS:
        event, error = "", "Choose an event from the list."

    def read(conn):
        return audit.entries(conn, slug=slug or None, since=since, events=(event,) if event else ())

    try:
        found = await s.web.db(read)
    except (InputError, NotFound):
        found = []
    if actor:
        found = [e for e in found if e.actor == actor]
    found = list(reversed(found))[:AUDIT_PAGE]
    return s.render(call.request, "audit.html.j2", {
        "entries": found, "events": audit.EVENTS, "f": {"slug": slug, "event": event, "actor": actor,
                                                       "since": since.date().isoformat()},
        "error": error}, call=call)
