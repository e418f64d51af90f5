"""A subscriber's own settings: topics and how often, pausing, downloading their data, and deleting it."""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pipeline.subscribers import lifecycle
from pipeline.subscribers.lifecycle import PAUSE_WEEKS
from pipeline.subscribers.model import CADENCES, Subscriber
from pipeline.web.handlers import Web, human_date, int_or_none

log = logging.getLogger("pipeline.web")

DATA_LINK_MAX_AGE = 3600
SAVED = {
    "preferences": "Your choices are saved.",
    "paused": "Your emails are paused.",
    "resumed": "Your emails will start again with the next digest.",
}


async def preferences_page(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    sub, page = await web.subscriber(request, "preferences", token)
    if page:
        return page
    return _preferences_page(web, request, sub, token, saved=SAVED.get(request.query_params.get("saved", ""), ""))


async def preferences(web: Web, request: Request) -> Response:
    posted, page = await web.posted(request, back="/preferences/{token}")
    if page:
        return page
    token, form, sub = posted.token, posted.form, posted.sub
    topics, error = web.parse_topics(form.getlist("topics"))
    cadence = str(form.get("cadence", ""))
    if cadence not in CADENCES:
        cadence = sub.cadence
    if error:
        return _preferences_page(web, request, sub, token, errors={"topics": error}, chosen=(), cadence=cadence,
                                 status=400)
    await web.db(lifecycle.update_preferences, sub, topics=topics, cadence=cadence, at=web.now())
    return RedirectResponse(f"/preferences/{token}?saved=preferences", status_code=303)


async def pause(web: Web, request: Request) -> Response:
    posted, page = await web.posted(request, back="/preferences/{token}")
    if page:
        return page
    token, sub = posted.token, posted.sub
    weeks = int_or_none(posted.form.get("weeks"))
    if weeks == 0:
        await web.db(lifecycle.resume, sub, at=web.now())
        return RedirectResponse(f"/preferences/{token}?saved=resumed", status_code=303)
    if weeks not in PAUSE_WEEKS:
        return _preferences_page(web, request, sub, token, status=400)
    await web.db(lifecycle.pause, sub, weeks=weeks, at=web.now())
    return RedirectResponse(f"/preferences/{token}?saved=paused", status_code=303)


async def data(web: Web, request: Request) -> Response:
    claims, page = web.verified(request, "data", request.path_params["token"], max_age=DATA_LINK_MAX_AGE)
    if page:
        return page

    def work(conn):
        sub = lifecycle.current(conn, claims)
        return lifecycle.export_data(conn, sub) if sub else None

    record = await web.db(work)
    if record is None:
        return web.not_subscribed(request)
    return Response(json.dumps(record, indent=2, ensure_ascii=False) + "\n", media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="mbc-digest-my-data.json"',
                             "Cache-Control": "no-store"})


async def delete_page(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    _sub, page = await web.subscriber(request, "preferences", token)
    if page:
        return page
    return web.render(request, "delete_data.html.j2", {"token": token})


async def delete(web: Web, request: Request) -> Response:
    posted, page = await web.posted(request, back="/preferences/{token}/delete")
    if page:
        return page
    await web.db(lifecycle.delete_data, posted.sub)
    log.info("subscriber data deleted", extra={"action": "data_deleted"})
    return web.message(request, "Your data is deleted",
                       ["We've deleted your email address and everything we held about you. "
                        "You won't get any more email from us.", "Thank you for reading with us."],
                       [("/", "Go to the home page")])


def _preferences_page(web: Web, request: Request, sub: Subscriber, token: str, *, saved: str = "",
                      errors: dict | None = None, chosen=None, cadence: str | None = None,
                      status: int = 200) -> HTMLResponse:
    paused = sub.paused_until if sub.paused_until and sub.paused_until > web.now() else None
    return web.render(request, "preferences.html.j2", {
        "token": token, "email": sub.email, "saved": saved, "errors": errors or {}, "topics": web.library.topics,
        "chosen": chosen if chosen is not None else (sub.topics or web.library.default_topic_ids),
        "cadence": cadence or sub.cadence, "pause_weeks": PAUSE_WEEKS,
        "paused_until": human_date(paused, sub.timezone) if paused else "",
        "data_url": "/data/" + web.signer.sign("data", sub.id, sub.token_version),
        "unsubscribe_url": web.links_for(sub)["unsubscribe_url"],
    }, status=status)
