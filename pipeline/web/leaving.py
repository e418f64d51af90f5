"""Leaving: the unsubscribe page, the one-click unsubscribe that mail programs POST, and reporting a death."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pipeline.subscribers import lifecycle
from pipeline.subscribers.csvio import check_email
from pipeline.subscribers.lifecycle import PAUSE_WEEKS
from pipeline.web import ratelimit
from pipeline.web.handlers import Web, human_date, int_or_none

log = logging.getLogger("pipeline.web")

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


async def unsubscribe_page(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    sub, page = await web.subscriber(request, "unsubscribe", token)
    if page:
        return page
    return web.render(request, "unsubscribe.html.j2", {
        "token": token, "pause_weeks": PAUSE_WEEKS,
        "gets_sensitive": bool(_sensitive(web) & set(sub.topics)),
        "preferences_url": web.links_for(sub)["preferences_url"]})


async def unsubscribe(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    form, page = await web.checked_form(request, f"/unsubscribe/{token}")
    if page:
        return page
    claims, page = web.verified(request, "unsubscribe", token)
    if page:
        return page
    action = str(form.get("action", ""))
    at = web.now()
    if action == "leave":
        await web.db(lifecycle.unsubscribe, claims, at=at)
        log.info("unsubscribed", extra={"action": "unsubscribe", "via": "page"})
        return _left(web, request)
    sub = await web.db(lifecycle.current, claims)
    if sub is None or sub.status != "confirmed":
        return web.not_subscribed(request)
    if action == "stop-sensitive":
        sub, still = await web.db(lifecycle.stop_sensitive_topics, sub, sensitive=_sensitive(web),
                                  default_topics=web.library.default_topic_ids, at=at)
        if not still:
            return web.message(request, "You're unsubscribed",
                               ["Hospice and end-of-life care was your only topic, so we've stopped all email.",
                                "If you ever want the digest again, you are always welcome back."],
                               [("/subscribe", "Subscribe again")])
        return web.message(request, "Done: no more end-of-life articles",
                           ["You'll keep getting the digest, without articles about hospice and end-of-life "
                            "care."], [(web.links_for(sub)["preferences_url"], "See or change your topics")])
    weeks = int_or_none(form.get("weeks"))
    if action == "pause" and weeks in PAUSE_WEEKS:
        sub = await web.db(lifecycle.pause, sub, weeks=weeks, at=at)
        return web.message(request, "Your emails are paused",
                           [f"We won't email you until {human_date(sub.paused_until, sub.timezone)}. "
                            "After that, your digest starts again by itself."],
                           [(web.links_for(sub)["preferences_url"], "Change your preferences")])
    return web.message(request, "Something was missing", ["Nothing has been changed. Please try again."],
                       [(f"/unsubscribe/{token}", "Go back")], status=400)


async def one_click_page(web: Web, request: Request) -> Response:
    return await unsubscribe_page(web, request)


async def one_click(web: Web, request: Request) -> Response:
    """RFC 8058: the mail provider POSTs ``List-Unsubscribe=One-Click``; no cookie, no CSRF token."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await web.form(request)
        ok = form is not None and form.get("List-Unsubscribe") == "One-Click"
    else:
        ok = (await request.body())[:200].strip() == ONE_CLICK_BODY
    if not ok:
        return web.message(request, "This address is for email programs",
                           ["Nothing has been changed. To stop getting email, use the unsubscribe link at "
                            "the bottom of any digest."], [("/", "Go to the home page")], status=400)
    claims, page = web.verified(request, "unsubscribe", request.path_params["token"])
    if page:
        return page
    await web.db(lifecycle.unsubscribe, claims, at=web.now())
    log.info("unsubscribed", extra={"action": "unsubscribe", "via": "one-click"})
    return _left(web, request)


async def deceased_form(web: Web, request: Request) -> Response:
    return web.render(request, "someone_has_died.html.j2", {"form": {"email": ""}, "errors": {}})


async def deceased(web: Web, request: Request) -> Response:
    form, page = await web.checked_form(request, "/someone-has-died")
    if page:
        return page
    raw = str(form.get("email", "")).strip()[:320]
    try:
        email = check_email(raw)
    except ValueError:
        return web.render(request, "someone_has_died.html.j2", {"form": {"email": raw}, "errors": {
            "email": "Please enter their email address." if not raw else
            "Please check the address. It should look like name@example.com."}}, status=400)
    at = web.now()
    if web.rate_limits:
        def limited(conn):
            key = ratelimit.key_for(ratelimit.DECEASED_PER_IP, request.client.host if request.client else "",
                                    secret=web.settings.secret_key)
            return not ratelimit.hit(conn, key, ratelimit.DECEASED_PER_IP, at=at)

        if await web.db(limited):
            return web.too_many(request)
    await web.db(lifecycle.report_deceased, email=email, at=at)
    log.info("deceased report handled", extra={"action": "deceased_suppressed"})
    return web.message(request, "We've stopped all email to that address",
                       ["We are so sorry for your loss.",
                        "Nothing more will be sent to that address, and we won't contact you about it. "
                        "You don't need to do anything else."],
                       [("/", "Go to the home page")])


def _sensitive(web: Web) -> frozenset[str]:
    return frozenset(t.id for t in web.library.topics if t.sensitive)


def _left(web: Web, request: Request) -> HTMLResponse:
    return web.message(request, "You're unsubscribed",
                       ["We won't send you any more email.", "Thank you for reading with us. "
                        "If you ever want the digest again, you are always welcome back."],
                       [("/subscribe", "Subscribe again"), ("/", "Read our articles and feeds")])
