"""Leaving: the unsubscribe page, the one-click unsubscribe that mail programs POST, and reporting a death."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pipeline.subscribers import lifecycle, messages
from pipeline.subscribers.csvio import check_email
from pipeline.subscribers.lifecycle import PAUSE_WEEKS
from pipeline.web import ratelimit
from pipeline.web.handlers import FORM_TYPES, Web, human_date, int_or_none

log = logging.getLogger("pipeline.web")

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
STOP_MAX_AGE = int(lifecycle.STOP_MAX_AGE.total_seconds())


async def unsubscribe_page(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    claims, page = web.verified(request, "unsubscribe", token)
    if page:
        return page
    # Any unsubscribe link we ever sent leads here, even from before a re-subscription: it can only reduce mail.
    sub = await web.db(lifecycle.subscriber_for, claims)
    if sub is None or sub.status != "confirmed":
        return web.not_subscribed(request)
    return web.render(request, "unsubscribe.html.j2", {
        "token": token, "pause_weeks": PAUSE_WEEKS,
        "gets_sensitive": bool(_sensitive(web) & set(sub.topics)),
        # A link from before a re-subscription may still stop mail, but it opens no preferences.
        "preferences_url": web.links_for(sub)["preferences_url"] if claims.version == sub.token_version else ""})


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
        result = await web.db(lifecycle.unsubscribe, claims, at=at)
        log.info("unsubscribed", extra={"action": "unsubscribe", "via": "page", "result": result})
        return _left(web, request, result)
    sub = await web.db(lifecycle.subscriber_for, claims)
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
    if ctype in FORM_TYPES:
        form, _cause = await web.form(request)
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
    result = await web.db(lifecycle.unsubscribe, claims, at=web.now())
    log.info("unsubscribed", extra={"action": "unsubscribe", "via": "one-click", "result": result})
    return _left(web, request, result)


async def deceased_form(web: Web, request: Request) -> Response:
    return web.render(request, "someone_has_died.html.j2", {"form": {"email": ""}, "errors": {}})


async def deceased(web: Web, request: Request) -> Response:
    """A stranger can type any address here, so this stops nothing by itself. It writes once to that address with
    a button that stops all mail; only the inbox's owner (or whoever reads it now) can press it."""
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
    secret = web.settings.secret_key
    ip = request.client.host if request.client else ""

    def work(conn):
        if web.rate_limits and not ratelimit.hit(conn, ratelimit.key_for(ratelimit.DECEASED_PER_IP, ip, secret=secret),
                                                 ratelimit.DECEASED_PER_IP, at=at):
            return "ip", None
        sub = lifecycle.stop_request(conn, email=email)
        if sub is None:
            return "nobody", None
        # One email per address per week however many people ask, so the form cannot flood an inbox.
        if not ratelimit.hit(conn, ratelimit.key_for(ratelimit.DECEASED_PER_ADDRESS, sub.email, secret=secret),
                             ratelimit.DECEASED_PER_ADDRESS, at=at):
            return "recent", None
        stop_url = web.url("/stop/" + web.signer.sign("stop", sub.id, sub.token_version))
        web.queue(conn, messages.stop_all(web.settings, sub, stop_url=stop_url, at=at), at=at, subscriber_id=sub.id)
        return "send", sub

    result, _sub = await web.db(work)
    log.info("deceased report handled", extra={"action": "deceased_report", "result": result})
    if result == "ip":
        return web.too_many(request)
    if result != "send":
        return web.message(request, "We haven't sent anything", [
            "We are so sorry for your loss.",
            "We have no email going to that address now, or we have already written to it about this in the last "
            "week, so we haven't sent anything and nothing has changed.",
            "If email from us still reaches that inbox, the unsubscribe link at the bottom of any of our emails "
            "stops all of it at once."], [("/", "Go to the home page")])
    return web.message(request, "We've sent one email to that address", [
        "We are so sorry for your loss.",
        "It has a single button that stops all email from us to that address. We haven't stopped anything yet: "
        "anyone could type an address here, so the button in that email decides.",
        "That is the only email this causes, and we won't contact you about it. You don't need to do anything else."],
        [("/", "Go to the home page")])


async def stop_page(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    claims, page = web.verified(request, "stop", token, max_age=STOP_MAX_AGE)
    if page:
        return page
    sub = await web.db(lifecycle.subscriber_for, claims)
    if sub is None:
        return web.not_subscribed(request)
    return web.render(request, "stop_all.html.j2", {"token": token})


async def stop(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    _form, page = await web.checked_form(request, f"/stop/{token}")
    if page:
        return page
    claims, page = web.verified(request, "stop", token, max_age=STOP_MAX_AGE)
    if page:
        return page
    if not await web.db(lifecycle.stop_all, claims, at=web.now()):
        return web.not_subscribed(request)
    log.info("all email stopped", extra={"action": "deceased_suppressed"})
    return web.message(request, "We've stopped all email to this address",
                       ["We are so sorry for your loss.", "Nothing more will be sent to this address."],
                       [("/", "Go to the home page")])


def _sensitive(web: Web) -> frozenset[str]:
    return frozenset(t.id for t in web.library.topics if t.sensitive)


def _left(web: Web, request: Request, result: str) -> HTMLResponse:
    if result == "gone":
        return web.message(request, "You're not subscribed",
                           ["We hold no subscription for this link any more (the data may have been deleted), "
                            "so we won't send you any email. Nothing has been changed."],
                           [("/subscribe", "Subscribe again"), ("/", "Read our articles and feeds")])
    return web.message(request, "You're unsubscribed",
                       ["We won't send you any more email." if result == "unsubscribed" else
                        "You were already unsubscribed, so we won't send you any email.",
                        "Thank you for reading with us. If you ever want the digest again, you are always welcome back."],
                       [("/subscribe", "Subscribe again"), ("/", "Read our articles and feeds")])
