"""The review page: the revision as readers will see it, a word-level diff against the last approved text, the
checks and the author; approve (a signature: the password again after 5 minutes) or ask for changes."""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.responses import Response

from pipeline.content.checks import MAX_GRADE, grade, next_review_due
from pipeline.content.render import plain_text
from pipeline.editorial import audit, record, review, sessions, staff, workbench
from pipeline.editorial.canonical import readable, revision_of
from pipeline.errors import NotFound
from pipeline.web.staff.articles import who
from pipeline.web.staff.common import Call, Staff, field

_WORDS = re.compile(r"\s+|[^\s]+")


def word_diff(old: list[str], new: list[str]) -> list[tuple[str, str]]:
    """(kind, text) runs: kind is '' (same), 'del' or 'ins'. Words and the spaces between them are the units; a
    lone space between two changes joins them, so a changed phrase reads as one removal and one addition."""
    a = _WORDS.findall("\n".join(old))
    b = _WORDS.findall("\n".join(new))
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    merged: list[list] = []
    for op, i1, i2, j1, j2 in ops:
        if (op == "equal" and merged and merged[-1][0] != "equal" and "".join(a[i1:i2]).isspace()
                and (i2, j2) != (len(a), len(b))):
            op = "replace"
        if merged and op != "equal" and merged[-1][0] != "equal":
            merged[-1][2], merged[-1][4] = i2, j2
        else:
            merged.append([op, i1, i2, j1, j2])
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in merged:
        if op == "equal":
            out.append(("", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("ins", "".join(b[j1:j2])))
    return out


def _checks(fields: dict, at, last_review_on) -> list[tuple[str, bool, str]]:
    body_grade = grade(plain_text(fields["body"]))
    summary_grade = grade(fields["summary"])
    bad_links = [s["url"] for s in fields["sources"] if urlsplit(s["url"]).scheme not in ("http", "https")
                 or not urlsplit(s["url"]).netloc]
    if fields.get("link") and (urlsplit(fields["link"]).scheme not in ("http", "https")
                               or not urlsplit(fields["link"]).netloc):
        bad_links.append(fields["link"])
    out = [
        ("Reading grade of the summary", summary_grade <= MAX_GRADE,
         f"US grade {summary_grade:.1f} (aim for {MAX_GRADE:.0f} or below)"),
        ("Reading grade of the body", body_grade <= MAX_GRADE,
         f"US grade {body_grade:.1f} (aim for {MAX_GRADE:.0f} or below)"),
        ("Sources present", bool(fields["sources"]), f"{len(fields['sources'])} cited"),
        ("Links well formed", not bad_links, "all are http or https addresses" if not bad_links
         else "not web addresses: " + ", ".join(bad_links)),
    ]
    if last_review_on is not None:
        due = next_review_due(last_review_on)
        out.append(("Review due", due > (at + timedelta(days=30)).date(),
                    f"the last approved text's review is due on {due.isoformat()}"))
    else:
        out.append(("Review due", True, "nothing approved yet: this is its first review"))
    return out


async def review_page(s: Staff, call: Call, *, error: str | None = None, status: int = 200) -> Response:
    slug = call.request.path_params["slug"]
    want = call.request.query_params.get("revision", "")[:64] or (field(call.form, "revision", 64) if call.form else "")
    current = workbench.current(s.content_dir, slug)
    if not want and current is not None:
        want = revision_of(current).hash

    def show():
        try:
            return review.preview(s.ctx.engine, slug, revision_hash=want, mode=s.settings.review_mode)
        except NotFound:
            return None

    shown = await anyio.to_thread.run_sync(show) if want else None

    def read(conn):
        last = record.last_approval(conn, slug, s.settings.review_mode)
        names = {a.actor: a.shown_as for a in staff.accounts(conn)}
        notes = [r for r in record.reviews_of(conn, slug) if r.revision == shown.revision.hash]
        return shown, last, names, notes

    found = await s.web.db(read) if shown else None
    if found is None:
        return s.page(call.request, "We can't find that revision", ["There is nothing stored to review here yet."],
                      [("/staff/", "Go to the dashboard")], call=call, status=404)
    shown, last, names, notes = found
    old = readable(shown.last_approved.text) if shown.last_approved else []
    return s.render(call.request, "review.html.j2", {
        "slug": slug, "shown": shown, "diff": word_diff(old, readable(shown.revision.text)),
        "checks": _checks(shown.revision.fields, call.at, last.reviewed_on if last else None),
        "author": who(shown.revision.author, names), "own": shown.revision.author == call.account.actor,
        "needs_password": not call.session.password_fresh(call.at), "error": error, "reviews": notes,
        "is_current": current is not None and revision_of(current).hash == shown.revision.hash,
    }, call=call, status=status)


async def decide(s: Staff, call: Call) -> Response:
    slug = call.request.path_params["slug"]
    revision_hash = field(call.form, "revision", 64)
    verdict = {"approve": "approved", "changes": "changes_requested"}.get(field(call.form, "action", 20))
    note = field(call.form, "note", 4000).strip()
    if verdict is None:
        return await review_page(s, call, error="Choose approve or ask for changes.", status=400)
    if verdict == "changes_requested" and not note:
        return await review_page(s, call, error="Say what needs to change in the note.", status=400)
    if verdict == "approved" and not call.session.password_fresh(call.at):
        password = field(call.form, "password", 1100)

        def check(conn):
            try:
                staff.authenticate(conn, call.account.email, password, code=None, at=call.at, second_factor=False)
            except staff.AuthError as exc:
                audit.append(conn, "approval_refused", actor=call.account.actor, at=call.at, slug=slug,
                             revision=revision_hash if len(revision_hash) == 64 else None, verdict=verdict,
                             reason=exc.reason)
                return False
            sessions.touch(conn, call.session, at=call.at, password=True)
            return True

        if not await s.web.db(check):
            return await review_page(s, call, error="That password isn't right. Approving is a signature, so "
                                                    "we ask for it again after 5 minutes.", status=400)
    try:
        await anyio.to_thread.run_sync(lambda: review.decide_as(
            s.ctx.engine, slug=slug, revision_hash=revision_hash, verdict=verdict, staff_id=call.account.id,
            note=note, at=call.at))
    except (review.ReviewRefused, NotFound) as exc:
        return await review_page(s, call, error=str(exc).split(": not recorded: ")[-1].capitalize() + ".",
                                 status=403 if isinstance(exc, review.ReviewRefused) else 404)
    if verdict == "approved":
        when = await s.web.db(lambda conn: workbench.after_approval(conn, s.content_dir, slug, revision_hash,
                                                                    at=call.at, mode=s.settings.review_mode))
        lines = ["Your approval is recorded with your name and today's date."]
        lines.append(f"It is scheduled for {when}; readers see it from the first feed build after that."
                     if when else "The article has changed since this revision; the newer text waits for review.")
    else:
        lines = ["Your note is recorded. Readers still see the last approved text."]
    return s.page(call.request, "Approved" if verdict == "approved" else "Changes requested", lines,
                  [(f"/staff/articles/{slug}/edit", "Open the article"), ("/staff/", "Go to the dashboard")],
                  call=call)
