"""The dashboard, the editor (create, edit, save, submit) and the preview, rendered by the public page's code."""

from __future__ import annotations

import difflib
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pipeline.content.checks import MAX_GRADE, grade
from pipeline.content.editor import slugify
from pipeline.content.model import Article
from pipeline.content.render import body_html, plain_text
from pipeline.delivery import issue_rows, ledger
from pipeline.editorial import checks, live, record, staff, workbench
from pipeline.editorial.canonical import readable, revision_of
from pipeline.feeds.model import Site
from pipeline.feeds.pages import Pages, environment
from pipeline.store.tables import publications, revisions
from pipeline.web.staff.common import Call, Staff, field

MAX_SOURCES = 20


def timezone(s: Staff) -> str:
    try:
        return s.ctx.schedule.timezone
    except Exception:  # a broken schedules.yaml must not lock editors out; `pipeline check` names it
        return s.web.default_timezone


def _authors(conn) -> dict[str, str]:
    return {a.actor: a.name for a in staff.accounts(conn)}


def who(actor: str, names: dict[str, str]) -> str:
    if actor in names:
        return names[actor]
    return "a file in content/" if actor.startswith("file:") else actor


async def dashboard(s: Staff, call: Call) -> Response:
    library = s.library()
    me = call.account

    def read(conn):
        names = _authors(conn)
        stored = {(r.slug, r.hash): r for r in conn.execute(select(revisions))}
        approved = {(r.slug, r.revision) for r in record.approvals(record.reviews_of(conn), s.settings.review_mode)}
        drafts, waiting = [], []
        for a in library.articles:
            rev = stored.get((a.slug, revision_of(a).hash))
            author = rev.author if rev else "file:"
            row = {"slug": a.slug, "title": a.title, "author": who(author, names),
                   "since": rev.created_at if rev else None}
            if a.status == "draft" and author == me.actor:
                drafts.append(row)
            if a.status == "review" and (a.slug, revision_of(a).hash) not in approved:
                if not (me.role == "reviewer" and author == me.actor):
                    waiting.append(row)
        waiting.sort(key=lambda r: (r["since"] or call.at, r["slug"]))
        weeks: dict[str, list] = defaultdict(list)
        for p in conn.execute(select(publications).where(publications.c.state == "scheduled",
                                                         publications.c.publish_at > call.at)
                              .order_by(publications.c.publish_at)):
            monday = (p.publish_at - timedelta(days=p.publish_at.weekday())).date()
            weeks[f"Week of {monday:%A} {monday.day} {monday:%B %Y}"].append(p)
        due = checks.review_due(live.live_articles(conn, at=call.at, mode=s.settings.review_mode), at=call.at,
                                within=timedelta(days=30))
        issues = [(d, fire, ledger.counts(conn, i)) for d, fire, i in issue_rows.latest_issues(conn)]
        return drafts, waiting, dict(weeks), due, issues

    drafts, waiting, weeks, due, issues = await s.web.db(read)
    return s.render(call.request, "dashboard.html.j2",
                    {"drafts": drafts, "waiting": waiting, "weeks": weeks, "due": due, "states": ledger.STATES,
                     "issues": issues, "is_reviewer": me.role == "reviewer",
                     "titles": {a.slug: a.title for a in library.articles}}, call=call)


def _local_input(when: datetime, tz: str) -> str:
    return when.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")


def _values(s: Staff, a: Article | None, tz: str, at: datetime) -> dict:
    if a is None:
        return {"slug": "", "title": "", "summary": "", "topics": [], "sources": [], "content_notes": "",
                "link": "", "publish_at": _local_input(at + timedelta(days=1), tz), "body": ""}
    return {"slug": a.slug, "title": a.title, "summary": a.summary, "topics": list(a.topics),
            "sources": [(x.title, x.url) for x in a.sources], "content_notes": ", ".join(a.content_notes),
            "link": a.link or "", "publish_at": _local_input(a.publish_at, tz), "body": a.body}


def _figures(summary: str) -> dict:
    return {"summary_length": len(summary), "summary_grade": round(grade(summary), 1), "max_grade": MAX_GRADE}


def _editor(s: Staff, call: Call, values: dict, *, new: bool, base: str | None, errors: dict | None = None,
            notice: str | None = None, conflict: dict | None = None, status: int = 200, state: str = "") -> Response:
    library = s.library()
    return s.render(call.request, "editor.html.j2", {
        "new": new, "v": values, "base": base or "", "errors": errors or {}, "notice": notice,
        "conflict": conflict, "topics": library.topics, "tz": timezone(s), "state": state,
        "is_reviewer": call.account.role == "reviewer", **_figures(values["summary"])}, call=call, status=status)


async def new_page(s: Staff, call: Call) -> Response:
    return _editor(s, call, _values(s, None, timezone(s), call.at), new=True, base=None)


def _state(s: Staff, conn, a: Article) -> str:
    pub = record.publication(conn, a.slug)
    h = revision_of(a).hash
    approved = record.is_approved(conn, a.slug, h, s.settings.review_mode)
    if pub and pub.state == "retracted":
        return "retracted"
    if approved:
        return "approved and scheduled" if pub and pub.state == "scheduled" else "approved"
    live_text = " Readers see the last approved text meanwhile." if pub and pub.state == "scheduled" else ""
    return ("waiting for review." if a.status == "review" else "a draft.") + live_text


async def edit_page(s: Staff, call: Call) -> Response:
    slug = call.request.path_params["slug"]
    a = workbench.current(s.content_dir, slug)
    if a is None and (raw := workbench.raw_values(s.content_dir, slug)) is not None:
        when = raw["publish_at"] if isinstance(raw["publish_at"], datetime) else call.at
        raw["publish_at"] = _local_input(when if when.tzinfo else when.replace(tzinfo=call.at.tzinfo), timezone(s))
        return _editor(s, call, raw, new=False, base="unparsed",
                       notice="This draft is not complete yet: write its title and summary in plain language.")
    if a is None:
        return s.page(call.request, "We can't find that article", ["There is no article at this address, or its "
                      "file has errors (run 'pipeline check')."], [("/staff/", "Go to the dashboard")], call=call,
                      status=404)
    state = await s.web.db(lambda conn: _state(s, conn, a))
    notice = {"saved": "Saved.", "submitted": "Saved and submitted for review."}.get(
        call.request.query_params.get("done", ""))
    return _editor(s, call, _values(s, a, timezone(s), call.at), new=False, base=revision_of(a).hash,
                   notice=notice, state=state)


def draft_from(s: Staff, call: Call) -> tuple[workbench.Draft | None, dict, dict]:
    """(draft, values as typed, errors)."""
    form = call.form
    titles = form.getlist("source_title")[:MAX_SOURCES] if form else []
    urls = form.getlist("source_url")[:MAX_SOURCES] if form else []
    pairs = [(str(t).strip()[:500], str(u).strip()[:2000]) for t, u in zip(titles, urls, strict=False)
             if isinstance(t, str) and isinstance(u, str) and (t.strip() or u.strip())]
    library = s.library()
    chosen = [t for t in (form.getlist("topics") if form else []) if isinstance(t, str) and t in library.topic_ids]
    values = {"slug": field(form, "slug", 120).strip(), "title": field(form, "title", 500),
              "summary": field(form, "summary", 2000), "topics": chosen, "sources": pairs,
              "content_notes": field(form, "content_notes", 500), "link": field(form, "link", 2000).strip(),
              "publish_at": field(form, "publish_at", 40).strip(), "body": field(form, "body", 100_000)}
    if not values["slug"] and values["title"]:
        values["slug"] = slugify(values["title"])
    errors = {}
    tz = timezone(s)
    try:
        when = datetime.fromisoformat(values["publish_at"]).replace(tzinfo=ZoneInfo(tz))
    except ValueError:
        errors["publish_at"] = "Enter a date and time, such as 2026-12-01 09:00."
        when = call.at
    notes = tuple(n.strip() for n in values["content_notes"].split(",") if n.strip())
    draft = workbench.Draft(slug=values["slug"], title=values["title"], summary=values["summary"],
                            topics=tuple(chosen), sources=tuple(pairs), content_notes=notes, link=values["link"],
                            publish_at=when, body=values["body"])
    return (None if errors else draft), values, errors


_FIELD_OF = {"title": "title", "summary": "summary", "topics": "topics", "link": "link", "slug": "slug",
             "publish_at": "publish_at", "content_notes": "content_notes", "body": "body", "sources": "sources"}


def problems_as_errors(problems) -> dict:
    errors: dict[str, str] = {}
    for p in problems:
        key = p.field.split("[", 1)[0].split(".", 1)[0]
        errors.setdefault(_FIELD_OF.get(key, "body"), f"{p.field}: {p.message}")
    return errors


async def save(s: Staff, call: Call) -> Response:
    draft, values, errors = draft_from(s, call)
    base = field(call.form, "base", 64) or None
    action = field(call.form, "action", 20)
    if action == "add_source" or draft is None:
        return _editor(s, call, values, new=base is None, base=base, errors=errors,
                       status=400 if errors else 200)
    saved = await s.web.db(lambda conn: workbench.save(conn, s.content_dir, draft, account=call.account, base=base,
                                                       submit=action == "submit", at=call.at))
    if saved.conflict is not None:
        theirs = readable(revision_of(saved.conflict).text)
        mine = readable(revision_of(saved.article).text)  # type: ignore[arg-type]
        conflict = {"theirs": theirs, "diff": list(difflib.unified_diff(theirs, mine, "their text", "your text",
                                                                        lineterm=""))}
        return _editor(s, call, values, new=False, base=revision_of(saved.conflict).hash, conflict=conflict,
                       status=409)
    errs = problems_as_errors([p for p in saved.problems if p.severity == "error"])
    if errs:
        return _editor(s, call, values, new=base is None, base=base, errors=errs, status=400)
    done = "submitted" if action == "submit" else "saved"
    return RedirectResponse(f"/staff/articles/{draft.slug}/edit?done={done}", status_code=303)


def render_public(s: Staff, a: Article) -> str:
    """The article exactly as the public page renders it, with a staff banner."""
    library = s.library()
    pages = Pages(environment(s.settings.templates_dir), site=Site.make(s.settings.site_url, "MBC Digest"),
                  library=library, css_version=s.web.asset_versions.get("site.css", ""))
    html = pages.article(a, body_html(a.body))
    banner = ('<p class="notice staff-preview" role="note">Preview for staff: this is how readers will see it. '
              'It is not published by this page.</p>')
    return html.replace('<main id="main" tabindex="-1">', '<main id="main" tabindex="-1">' + banner, 1)


async def preview(s: Staff, call: Call) -> Response:
    from pipeline.content.loader import load_topics, parse_article

    draft, values, errors = draft_from(s, call)
    problems = []
    if draft is not None:
        text = workbench.file_text(draft, status="review", author=call.account.name)
        topics, _ = load_topics(s.content_dir / "topics.yaml")
        a, problems = parse_article(text, slug=draft.slug or "preview", path="preview",
                                    topic_ids=frozenset(t.id for t in topics))
        if a is not None:
            return HTMLResponse(render_public(s, a))
    errs = errors or problems_as_errors([p for p in problems if p.severity == "error"])
    return _editor(s, call, values, new=not field(call.form, "base", 64), base=field(call.form, "base", 64) or None,
                   errors=errs, status=400)


async def revision_preview(s: Staff, call: Call) -> Response:
    """GET /staff/preview?slug=…&revision=…: a stored revision as readers would see it."""
    from pipeline.editorial.canonical import apply

    slug = call.request.query_params.get("slug", "")[:120]
    want = call.request.query_params.get("revision", "")[:64]
    found = await s.web.db(lambda conn: record.revision(conn, slug, want))
    current = workbench.current(s.content_dir, slug)
    if found is None:
        return s.page(call.request, "We can't find that revision", ["Nothing has been changed."],
                      [("/staff/", "Go to the dashboard")], call=call, status=404)
    base = current or Article(slug=slug, title="", summary="", topics=(), status="review", publish_at=call.at)
    return HTMLResponse(render_public(s, apply(base, found.text)))


def summary_words(text: str) -> str:
    return plain_text(text)
