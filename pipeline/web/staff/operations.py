"""Schedule and retract approved articles, and preview the next issue of each digest per variant."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from starlette.responses import HTMLResponse, RedirectResponse, Response

from pipeline.editorial import live, workbench
from pipeline.errors import InputError, NotFound, PipelineError
from pipeline.web.staff.articles import timezone
from pipeline.web.staff.common import Call, Staff, field

# An email's HTML carries inline styles (mail clients need them); still no script, and it cannot send forms.
EMAIL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; form-action 'none'; "
             "frame-ancestors 'none'; base-uri 'none'")


async def schedule(s: Staff, call: Call) -> Response:
    slug = call.request.path_params["slug"]
    raw = field(call.form, "publish_at", 40).strip()
    try:
        when = datetime.fromisoformat(raw).replace(tzinfo=ZoneInfo(timezone(s)))
    except ValueError:
        return s.page(call.request, "Please check the publish time", [
            f"{raw!r} is not a date and time; use the form's field, such as 2026-12-01 09:00. Nothing was changed."],
            [(f"/staff/articles/{slug}/edit", "Back to the article")], call=call, status=400)
    try:
        await s.web.db(lambda conn: workbench.reschedule(conn, s.content_dir, slug, when, account=call.account,
                                                         at=call.at))
    except (InputError, NotFound) as exc:
        return s.page(call.request, "Not scheduled", [str(exc), "Nothing was changed."],
                      [(f"/staff/articles/{slug}/edit", "Back to the article")], call=call, status=400)
    return RedirectResponse(f"/staff/articles/{slug}/edit?done=scheduled", status_code=303)


async def retract(s: Staff, call: Call) -> Response:
    slug = call.request.path_params["slug"]
    reason = field(call.form, "reason", 1000)
    try:
        await s.web.db(lambda conn: workbench.retract(conn, s.content_dir, slug, reason, account=call.account,
                                                      at=call.at))
    except (InputError, NotFound) as exc:
        return s.page(call.request, "Not retracted", [str(exc), "Nothing was changed."],
                      [(f"/staff/articles/{slug}/edit", "Back to the article")], call=call, status=400)
    return s.page(call.request, "Retracted", ["The article leaves the site and the feeds at the next feed build. "
                                              "The reason is in the audit log."],
                  [("/staff/", "Go to the dashboard")], call=call)


async def digests(s: Staff, call: Call) -> Response:
    try:
        schedule_ = s.ctx.schedule
        names = [(name, d.title) for name, d in schedule_.digests.items()]
    except Exception as exc:  # a broken schedules.yaml: say so instead of failing the page
        names, problem = [], str(exc)
    else:
        problem = None
    return s.render(call.request, "digests.html.j2", {"digests": names, "problem": problem,
                                                      "topics": s.library().topics}, call=call)


async def digest_preview(s: Staff, call: Call) -> Response:
    from pipeline.digests.send import preview_digest

    params = call.request.query_params
    name = params.get("digest", "")[:60]
    topics = tuple(t for t in params.getlist("topics")[:30])
    library = s.library()

    def read(conn):
        return live.publishing_library(conn, library, at=call.at, mode=s.settings.review_mode)

    try:
        publishing = await s.web.db(read)
        schedule_ = s.ctx.schedule
        job = schedule_.job_for_digest(name)
        html = preview_digest(name, at=job.next_fire(call.at), settings=s.settings, library=publishing,
                              schedule=schedule_, topics=topics or None)
    except (PipelineError, KeyError) as exc:
        return s.page(call.request, "Nothing to preview", [str(exc).strip("'")],
                      [("/staff/digests", "Back to the digests")], call=call, status=400)
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_CSP})
