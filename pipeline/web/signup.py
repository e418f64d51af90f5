"""Signing up: the sign-up form, sending the confirmation email again, and confirming."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pipeline.delivery.factory import address_problem
from pipeline.subscribers import lifecycle, messages
from pipeline.subscribers.csvio import check_email, has_control_characters
from pipeline.subscribers.model import CADENCES
from pipeline.web import ratelimit
from pipeline.web.handlers import Web

log = logging.getLogger("pipeline.web")

CONFIRM_MAX_AGE = int(lifecycle.CONFIRM_MAX_AGE.total_seconds())
TIMEZONES = (
    ("America/New_York", "Eastern time (US and Canada)"),
    ("America/Chicago", "Central time (US and Canada)"),
    ("America/Denver", "Mountain time (US and Canada)"),
    ("America/Phoenix", "Arizona"),
    ("America/Los_Angeles", "Pacific time (US and Canada)"),
    ("America/Anchorage", "Alaska"),
    ("Pacific/Honolulu", "Hawaii"),
    ("America/Halifax", "Atlantic time (Canada)"),
    ("America/St_Johns", "Newfoundland"),
    ("Europe/London", "UK and Ireland"),
    ("Europe/Paris", "Central Europe"),
    ("Australia/Sydney", "Eastern Australia"),
    ("UTC", "Universal time (UTC)"),
)


async def subscribe_form(web: Web, request: Request) -> Response:
    return _signup_page(web, request, {
        "email": "", "name": "", "topics": web.library.default_topic_ids, "cadence": "weekly",
        "timezone": web.default_timezone, "timezone_chosen": False}, {})


async def subscribe(web: Web, request: Request) -> Response:
    form, page = await web.checked_form(request, "/subscribe")
    if page:
        return page
    raw_email = str(form.get("email", "")).strip()[:320]
    if form.get("website"):
        # The field people never see was filled in: almost always a program. Nothing is stored or sent, and the
        # page says so (it never claims an email went).
        return web.message(request, "We couldn't sign you up",
                           ["A field that people don't see (\u201cLeave this empty\u201d) came back filled in, which "
                            "usually means a program filled in the form. Nothing has been sent.",
                            "If you are a person, please reload the sign-up page and try again."],
                           [("/subscribe", "Go to the sign-up page")], status=400)
    name = str(form.get("name", "")).strip()
    timezone = str(form.get("timezone", "")).strip()[:64]
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        timezone = web.default_timezone
    cadence = str(form.get("cadence", "weekly"))
    topics, topic_error = web.parse_topics(form.getlist("topics"))
    errors: dict[str, str] = {}
    try:
        email = check_email(raw_email)
    except ValueError:
        email = ""
        errors["email"] = ("Please enter your email address." if not raw_email else
                           "Please check your email address. It should look like name@example.com.")
    if email and address_problem(web.settings, email):
        # Said now, kindly: otherwise the confirmation email fails unseen and the person waits for nothing.
        errors["email"] = ("Sorry, we cannot send email to an address with letters such as é or ü yet. "
                           "If you have another email address, please use that one.")
    if topic_error:
        errors["topics"] = topic_error
    if len(name) > 200:
        errors["name"] = "Please use a shorter name (200 characters at most)."
    elif has_control_characters(name):
        errors["name"] = "Please use only letters, numbers, spaces and punctuation in your name."
    if cadence not in CADENCES:
        cadence = "weekly"
    if errors:
        return _signup_page(web, request, {
            "email": raw_email, "name": name[:200], "topics": topics or (), "cadence": cadence,
            "timezone": timezone, "timezone_chosen": True}, errors, status=400)
    at = web.now()
    if page := await _rate_limited(web, request, email, at):
        return page

    def work(conn):
        lifecycle.expire_unconfirmed_in(conn, at)
        outcome = lifecycle.subscribe(conn, email=email, name=name, topics=topics, cadence=cadence,
                                      timezone=timezone, at=at)
        _queue_confirmation(web, conn, outcome, at)
        return outcome

    outcome = await web.db(work)
    log.info("sign-up handled", extra={"action": "signup", "result": outcome.result})
    return _check_inbox(web, request, email, _state(outcome))


async def resend(web: Web, request: Request) -> Response:
    form, page = await web.checked_form(request, "/subscribe")
    if page:
        return page
    try:
        email = _resend_codec(web).loads(str(form.get("r", "")), max_age=86400)
    except BadSignature:
        return web.message(request, "Please sign up again",
                           ["This page is too old to send the email again. Nothing has been changed."],
                           [("/subscribe", "Go to the sign-up page")], status=400)
    at = web.now()
    if page := await _rate_limited(web, request, email, at, resent=True):
        return page
    def work(conn):
        outcome = lifecycle.request_confirmation(conn, email=email, at=at)
        _queue_confirmation(web, conn, outcome, at)
        return outcome

    outcome = await web.db(work)
    return _check_inbox(web, request, email, _state(outcome), resent=True)


async def confirm_page(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    claims, page = web.verified(request, "signup", token, max_age=CONFIRM_MAX_AGE)
    if page:
        return page
    signup, sub = await web.db(lifecycle.signup_request, claims)
    if signup is None:
        return _signup_gone(web, request)
    if sub.status == "confirmed":
        return web.render(request, "confirmed.html.j2", {"welcome": False, "cadence": sub.cadence, **web.links_for(sub)})
    # What this link confirms, so the owner of the inbox sees it before saying yes. Only our own words: the
    # topic titles and the cadence, never what the requester typed.
    titles = [t.title for t in web.library.topics if t.id in signup.topics]
    return web.render(request, "confirm.html.j2", {"token": token, "topics": titles, "cadence": signup.cadence})


async def confirm(web: Web, request: Request) -> Response:
    token = request.path_params["token"]
    _form, page = await web.checked_form(request, f"/confirm/{token}")
    if page:
        return page
    claims, page = web.verified(request, "signup", token, max_age=CONFIRM_MAX_AGE)
    if page:
        return page
    at = web.now()
    archive = _archive_url(web)

    def work(conn):
        outcome = lifecycle.confirm(conn, claims, at=at)
        if outcome.send_welcome:
            sub = outcome.subscriber
            web.queue(conn, messages.welcome(web.settings, sub, library=web.library, archive_url=archive, at=at,
                                             **web.links_for(sub)), at=at, subscriber_id=sub.id)
        return outcome

    outcome = await web.db(work)
    log.info("confirmation handled", extra={"action": "confirm", "result": outcome.result})
    if outcome.result == "suppressed":
        return web.message(request, "We can't send email to this address",
                           ["Earlier email to it was returned as undeliverable or reported as unwanted, so all email "
                            "to it is stopped, and this sign-up cannot be confirmed. Nothing has been changed.",
                            f"If you would like the digest at this address, please write to us at "
                            f"{web.settings.sender}."], [("/subscribe", "Go to the sign-up page")])
    if outcome.result == "missing":
        return _signup_gone(web, request)
    sub = outcome.subscriber
    links = web.links_for(sub)
    return web.render(request, "confirmed.html.j2", {"welcome": outcome.send_welcome, "cadence": sub.cadence, **links})


def _signup_page(web: Web, request: Request, form: dict, errors: dict, status: int = 200) -> HTMLResponse:
    return web.render(request, "subscribe.html.j2", {
        "form": form, "errors": errors, "topics": web.library.topics, "timezones": _timezones(form["timezone"]),
    }, status=status)


def _timezones(chosen: str) -> list[tuple[str, str]]:
    zones = list(TIMEZONES)
    if chosen and chosen not in dict(zones):
        zones.append((chosen, chosen.replace("_", " ")))
    return zones


def _resend_codec(web: Web) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(web.settings.secret_key, salt="mbc-pipeline/resend")


def _state(outcome: lifecycle.SignupOutcome) -> str:
    """What the check-your-inbox page may truthfully say: "sent" only when an email was queued."""
    if outcome.queued:
        return "sent"
    return {"resent-too-soon": "too-soon", "already-confirmed": "too-soon", "suppressed": "suppressed",
            "missing": "missing"}.get(outcome.result, "missing")


def _check_inbox(web: Web, request: Request, email: str, state: str, *, resent: bool = False) -> HTMLResponse:
    return web.render(request, "check_inbox.html.j2", {
        "email": email, "state": state, "resent": resent, "resend_value": _resend_codec(web).dumps(email),
        "contact": web.settings.sender})


def _signup_gone(web: Web, request: Request) -> HTMLResponse:
    return web.message(request, "Please sign up again",
                       ["We couldn't find this sign-up. Unconfirmed sign-ups are removed after 7 days."],
                       [("/subscribe", "Go to the sign-up page")])


async def _rate_limited(web: Web, request: Request, email: str, at: datetime, *,
                        resent: bool = False) -> HTMLResponse | None:
    """The page to show instead when this connection or address has asked too often, else None.

    An address over its limit is told that nothing more was sent to it this hour.
    """
    if not web.rate_limits:
        return None
    over = await web.db(_signup_limits, web.settings.secret_key, request.client.host if request.client else "",
                        email, at)
    if over == "ip":
        return web.too_many(request)
    if over == "address":
        return _check_inbox(web, request, email, "limited", resent=resent)
    return None


def _signup_limits(conn, secret: str, ip: str, email: str, at: datetime) -> str:
    if not ratelimit.hit(conn, ratelimit.key_for(ratelimit.SIGNUP_PER_IP, ip, secret=secret),
                         ratelimit.SIGNUP_PER_IP, at=at):
        return "ip"
    if not ratelimit.hit(conn, ratelimit.key_for(ratelimit.SIGNUP_PER_ADDRESS, email, secret=secret),
                         ratelimit.SIGNUP_PER_ADDRESS, at=at):
        return "address"
    return ""


def _queue_confirmation(web: Web, conn, outcome: lifecycle.SignupOutcome, at: datetime) -> None:
    """Queue the email a sign-up outcome calls for, in the sign-up's own transaction."""
    sub = outcome.subscriber
    if outcome.send_confirmation and sub is not None and outcome.request_id is not None:
        url = web.url("/confirm/" + web.signer.sign("signup", outcome.request_id, sub.token_version))
        web.queue(conn, messages.confirmation(web.settings, sub, confirm_url=url, at=at), at=at,
                  subscriber_id=sub.id, signup_request_id=outcome.request_id)
    elif outcome.send_reminder and sub is not None:
        url = web.links_for(sub)["preferences_url"]
        web.queue(conn, messages.already_subscribed(web.settings, sub, preferences_url=url, at=at), at=at,
                  subscriber_id=sub.id)


def _archive_url(web: Web) -> str:
    """The digest archive (public/digests/, written with each issue), else the home page."""
    if (Path(web.settings.public_dir) / "digests" / "index.html").is_file():
        return web.url("/digests/")
    return web.url("/")
