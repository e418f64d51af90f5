"""Subscriber pages. Thin: parse the request, call the lifecycle, render a template, send mail after responding.

GET never changes state (link scanners follow every link), so every change is a POST behind a button.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio.to_thread
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pipeline.content.model import Library
from pipeline.errors import PipelineError
from pipeline.feeds.items import ALL, Site, feed_links
from pipeline.settings import Settings
from pipeline.subscribers import lifecycle, messages
from pipeline.subscribers.csvio import check_email
from pipeline.subscribers.lifecycle import PAUSE_WEEKS
from pipeline.subscribers.model import CADENCES, Subscriber
from pipeline.subscribers.tokens import Signer, TokenClaims, TokenError
from pipeline.web import ratelimit
from pipeline.web.security import Csrf

log = logging.getLogger("pipeline.web")

MAX_BODY = 64 * 1024
DATA_LINK_MAX_AGE = 3600
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
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
SAVED = {
    "preferences": "Your choices are saved.",
    "paused": "Your emails are paused.",
    "resumed": "Your emails will start again with the next digest.",
}


@dataclass(kw_only=True)
class Web:
    """Everything the pages need, built once by ``create_app``."""

    settings: Settings
    engine: Engine
    library: Library
    env: Environment
    signer: Signer
    csrf: Csrf
    now: Callable[[], datetime]
    default_timezone: str = "America/New_York"
    rate_limits: bool = True
    asset_versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.base_url = self.settings.site_url.rstrip("/")
        self.site = Site.make(self.settings.site_url, "MBC Digest")
        self.site_feeds = feed_links(self.site, ALL)
        self._resend = URLSafeTimedSerializer(self.settings.secret_key, salt="mbc-pipeline/resend")
        self.sensitive = frozenset(t.id for t in self.library.topics if t.sensitive)
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()

    # ----- helpers -------------------------------------------------------------------------------------------

    async def db(self, fn, *args, **kwargs):
        def run():
            # SQLite has one writer; queueing here avoids its busy-wait back-off (sleeps of up to 100 ms).
            with self._write_lock, self.engine.begin() as conn:
                return fn(conn, *args, **kwargs)

        return await anyio.to_thread.run_sync(run)

    def render(self, request: Request, template: str, values: dict | None = None, *, status: int = 200,
               background: BackgroundTask | None = None) -> HTMLResponse:
        cookie, new = self.csrf.cookie_for(request)
        html = self.env.get_template(f"web/{template}").render(
            csrf_token=self.csrf.field_value(cookie), site=self.site, site_feeds=self.site_feeds, root="/",
            css_version=self.asset_versions.get("site.css", ""),
            tz_script_url="/static/tz.js?v=" + self.asset_versions.get("tz.js", ""), **(values or {}))
        response = HTMLResponse(html, status_code=status, background=background,
                                headers={"Cache-Control": "no-store"})
        if new:
            self.csrf.set_cookie(response, cookie)
        return response

    def message(self, request: Request, heading: str, paragraphs: list[str], links=(), *, status: int = 200,
                background: BackgroundTask | None = None) -> HTMLResponse:
        return self.render(request, "message.html.j2",
                           {"heading": heading, "paragraphs": paragraphs, "links": list(links)},
                           status=status, background=background)

    def bad_link(self, request: Request, error: TokenError) -> HTMLResponse:
        expired = "expired" in str(error)
        return self.message(
            request,
            "This link has expired" if expired else "This link doesn't work",
            ["Nothing has been changed."]
            + (["Links to confirm a subscription work for 7 days. Signing up again only takes a minute."] if expired
               else ["It may be missing a part, which can happen when a link is copied or split across lines. "
                     "Please try the link in your most recent email from us."]),
            [("/subscribe", "Go to the sign-up page")], status=400)

    def not_subscribed(self, request: Request) -> HTMLResponse:
        return self.message(
            request, "You're not subscribed",
            ["We don't have a subscription for this link, so we won't send you any email.",
             "If you've just unsubscribed or deleted your data, that's why. You are always welcome back."],
            [("/subscribe", "Subscribe again")])

    def csrf_failed(self, request: Request, back: str) -> HTMLResponse:
        return self.message(
            request, "Please try that again",
            ["For your safety, this form needs to be sent from our own page, and it needs cookies turned on. "
             "Nothing has been changed.", "Please go back to the page, reload it, and try again."],
            [(back, "Go back to the page")], status=403)

    def too_many(self, request: Request) -> HTMLResponse:
        return self.message(
            request, "Please wait a little while",
            ["We've had a lot of requests from your connection, so we've paused this form for now. "
             "Please try again in an hour."],
            [("/", "Go to the home page")], status=429)

    async def form(self, request: Request):
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return None
        return await request.form(max_files=0, max_fields=60)

    def claims(self, purpose: str, token: str, *, max_age: int | None = None) -> TokenClaims:
        return self.signer.verify(purpose, token, max_age=max_age)

    def url(self, path: str) -> str:
        return self.base_url + path

    def links_for(self, sub: Subscriber) -> dict[str, str]:
        return {
            "preferences_url": self.url("/preferences/" + self.signer.sign("preferences", sub.id, sub.token_version)),
            "unsubscribe_url": self.url("/unsubscribe/" + self.signer.sign("unsubscribe", sub.id, sub.token_version)),
        }

    def send(self, build: Callable[[datetime], object], kind: str) -> BackgroundTask:
        """Send after the response is written, so known and unknown addresses answer alike and equally fast."""
        at = self.now()

        def run() -> None:
            from pipeline.delivery.transactional import send_message

            try:
                send_message(self.settings, build(at))
            except PipelineError as exc:
                log.error("could not send %s email: %s", kind, exc, extra={"action": "transactional_failed"})

        return BackgroundTask(run)

    def confirmation_task(self, outcome: lifecycle.SignupOutcome) -> BackgroundTask | None:
        sub = outcome.subscriber
        if outcome.send_confirmation and sub is not None:
            url = self.url("/confirm/" + self.signer.sign("confirm", sub.id, sub.token_version))
            return self.send(lambda at: messages.confirmation(self.settings, sub, confirm_url=url, at=at), "confirm")
        if outcome.send_reminder and sub is not None:
            url = self.links_for(sub)["preferences_url"]
            return self.send(lambda at: messages.already_subscribed(self.settings, sub, preferences_url=url, at=at),
                             "already")
        return None

    def archive_url(self) -> str:
        public = Path(self.settings.public_dir)
        for candidate in ("archive/index.html", "archive.html"):
            if (public / candidate).is_file():
                return self.url("/" + candidate.removesuffix("index.html"))
        return self.url("/")

    def timezones(self, chosen: str) -> list[tuple[str, str]]:
        zones = list(TIMEZONES)
        if chosen and chosen not in dict(zones):
            zones.append((chosen, chosen.replace("_", " ")))
        return zones

    def parse_topics(self, values: list[str]) -> tuple[tuple[str, ...], str | None]:
        known = set(self.library.topic_ids)
        picked = [v for v in values if isinstance(v, str)]
        if any(v not in known for v in picked):
            return (), "Please choose topics from the list."
        if not picked:
            return (), "Please choose at least one topic."
        return tuple(t for t in self.library.topic_ids if t in picked), None

    # ----- sign-up -------------------------------------------------------------------------------------------

    def _signup_page(self, request: Request, form: dict, errors: dict, status: int = 200) -> HTMLResponse:
        return self.render(request, "subscribe.html.j2", {
            "form": form, "errors": errors, "topics": self.library.topics,
            "timezones": self.timezones(form["timezone"]),
        }, status=status)

    async def subscribe_form(self, request: Request) -> Response:
        return self._signup_page(request, {
            "email": "", "name": "", "topics": self.library.default_topic_ids, "cadence": "weekly",
            "timezone": self.default_timezone, "timezone_chosen": False}, {})

    def _check_inbox(self, request: Request, email: str, *, resent: bool = False,
                     background: BackgroundTask | None = None) -> HTMLResponse:
        return self.render(request, "check_inbox.html.j2", {
            "email": email, "resent": resent, "resend_value": self._resend.dumps(email)}, background=background)

    async def subscribe(self, request: Request) -> Response:
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, "/subscribe")
        raw_email = str(form.get("email", "")).strip()[:320]
        if form.get("website"):
            # A bot filled the hidden field: answer exactly as for a person, and do nothing.
            return self._check_inbox(request, raw_email)
        name = str(form.get("name", "")).strip()
        timezone = str(form.get("timezone", "")).strip()[:64]
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            timezone = self.default_timezone
        cadence = str(form.get("cadence", "weekly"))
        topics, topic_error = self.parse_topics(form.getlist("topics"))
        errors: dict[str, str] = {}
        try:
            email = check_email(raw_email)
        except ValueError:
            email = ""
            errors["email"] = ("Please enter your email address." if not raw_email else
                               "Please check your email address. It should look like name@example.com.")
        if topic_error:
            errors["topics"] = topic_error
        if len(name) > 200:
            errors["name"] = "Please use a shorter name (200 characters at most)."
        if cadence not in CADENCES:
            cadence = "weekly"
        if errors:
            return self._signup_page(request, {
                "email": raw_email, "name": name[:200], "topics": topics or (), "cadence": cadence,
                "timezone": timezone, "timezone_chosen": True}, errors, status=400)
        at = self.now()
        if self.rate_limits:
            allowed = await self.db(self._signup_limits, request.client.host if request.client else "", email, at)
            if allowed == "ip":
                return self.too_many(request)
            if allowed == "address":
                return self._check_inbox(request, email)

        def work(conn):
            lifecycle.expire_unconfirmed_in(conn, at)
            return lifecycle.subscribe(conn, email=email, name=name, topics=topics, cadence=cadence,
                                       timezone=timezone, at=at)

        outcome = await self.db(work)
        log.info("sign-up handled", extra={"action": "signup", "result": outcome.result})
        return self._check_inbox(request, email, background=self.confirmation_task(outcome))

    def _signup_limits(self, conn, ip: str, email: str, at: datetime) -> str:
        secret = self.settings.secret_key
        if not ratelimit.hit(conn, ratelimit.key_for(ratelimit.SIGNUP_PER_IP, ip, secret=secret),
                             ratelimit.SIGNUP_PER_IP, at=at):
            return "ip"
        if not ratelimit.hit(conn, ratelimit.key_for(ratelimit.SIGNUP_PER_ADDRESS, email, secret=secret),
                             ratelimit.SIGNUP_PER_ADDRESS, at=at):
            return "address"
        return ""

    async def resend(self, request: Request) -> Response:
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, "/subscribe")
        try:
            email = self._resend.loads(str(form.get("r", "")), max_age=86400)
        except BadSignature:
            return self.message(request, "Please sign up again",
                                ["This page is too old to send the email again. Nothing has been changed."],
                                [("/subscribe", "Go to the sign-up page")], status=400)
        at = self.now()
        if self.rate_limits:
            allowed = await self.db(self._signup_limits, request.client.host if request.client else "", email, at)
            if allowed == "ip":
                return self.too_many(request)
            if allowed == "address":
                return self._check_inbox(request, email, resent=True)
        outcome = await self.db(lifecycle.request_confirmation, email=email, at=at)
        return self._check_inbox(request, email, resent=True, background=self.confirmation_task(outcome))

    # ----- confirmation --------------------------------------------------------------------------------------

    async def confirm_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            claims = self.claims("confirm", token, max_age=int(lifecycle.CONFIRM_MAX_AGE.total_seconds()))
        except TokenError as exc:
            return self.bad_link(request, exc)
        sub = await self.db(lifecycle.current, claims)
        if sub is None:
            return self.message(request, "Please sign up again",
                                ["We couldn't find this sign-up. Unconfirmed sign-ups are removed after 7 days."],
                                [("/subscribe", "Go to the sign-up page")])
        if sub.status == "confirmed":
            return self.render(request, "confirmed.html.j2",
                               {"welcome": False, "cadence": sub.cadence, **self.links_for(sub)})
        return self.render(request, "confirm.html.j2", {"token": token})

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, f"/confirm/{token}")
        try:
            claims = self.claims("confirm", token, max_age=int(lifecycle.CONFIRM_MAX_AGE.total_seconds()))
        except TokenError as exc:
            return self.bad_link(request, exc)
        outcome = await self.db(lifecycle.confirm, claims, at=self.now())
        log.info("confirmation handled", extra={"action": "confirm", "result": outcome.result})
        if outcome.result in ("missing", "suppressed"):
            return self.message(request, "Please sign up again",
                                ["We couldn't find this sign-up. Unconfirmed sign-ups are removed after 7 days."],
                                [("/subscribe", "Go to the sign-up page")])
        sub = outcome.subscriber
        links = self.links_for(sub)
        background = None
        if outcome.send_welcome:
            archive = self.archive_url()
            background = self.send(lambda at: messages.welcome(
                self.settings, sub, library=self.library, archive_url=archive, at=at, **links), "welcome")
        return self.render(request, "confirmed.html.j2",
                           {"welcome": outcome.send_welcome, "cadence": sub.cadence, **links}, background=background)

    # ----- preferences ---------------------------------------------------------------------------------------

    async def _subscriber(self, purpose: str, token: str, request: Request):
        """(subscriber, None) or (None, the page to show instead)."""
        try:
            claims = self.claims(purpose, token)
        except TokenError as exc:
            return None, self.bad_link(request, exc)
        sub = await self.db(lifecycle.current, claims)
        if sub is None or sub.status != "confirmed":
            return None, self.not_subscribed(request)
        return sub, None

    def _preferences_page(self, request: Request, sub: Subscriber, token: str, *, saved: str = "",
                          errors: dict | None = None, chosen=None, cadence: str | None = None, status: int = 200):
        paused = sub.paused_until if sub.paused_until and sub.paused_until > self.now() else None
        return self.render(request, "preferences.html.j2", {
            "token": token, "email": sub.email, "saved": saved, "errors": errors or {}, "topics": self.library.topics,
            "chosen": chosen if chosen is not None else (sub.topics or self.library.default_topic_ids),
            "cadence": cadence or sub.cadence, "pause_weeks": PAUSE_WEEKS,
            "paused_until": _human_date(paused, sub.timezone) if paused else "",
            "data_url": "/data/" + self.signer.sign("data", sub.id, sub.token_version),
            "unsubscribe_url": self.links_for(sub)["unsubscribe_url"],
        }, status=status)

    async def preferences_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub, page = await self._subscriber("preferences", token, request)
        if page:
            return page
        return self._preferences_page(request, sub, token, saved=SAVED.get(request.query_params.get("saved", ""), ""))

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, f"/preferences/{token}")
        sub, page = await self._subscriber("preferences", token, request)
        if page:
            return page
        topics, error = self.parse_topics(form.getlist("topics"))
        cadence = str(form.get("cadence", ""))
        if cadence not in CADENCES:
            cadence = sub.cadence
        if error:
            return self._preferences_page(request, sub, token, errors={"topics": error}, chosen=(), cadence=cadence,
                                          status=400)
        await self.db(lifecycle.update_preferences, sub, topics=topics, cadence=cadence, at=self.now())
        return RedirectResponse(f"/preferences/{token}?saved=preferences", status_code=303)

    async def pause(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, f"/preferences/{token}")
        sub, page = await self._subscriber("preferences", token, request)
        if page:
            return page
        weeks = _int(form.get("weeks"))
        if weeks == 0:
            await self.db(lifecycle.resume, sub, at=self.now())
            return RedirectResponse(f"/preferences/{token}?saved=resumed", status_code=303)
        if weeks not in PAUSE_WEEKS:
            return self._preferences_page(request, sub, token, status=400)
        await self.db(lifecycle.pause, sub, weeks=weeks, at=self.now())
        return RedirectResponse(f"/preferences/{token}?saved=paused", status_code=303)

    async def data(self, request: Request) -> Response:
        try:
            claims = self.claims("data", request.path_params["token"], max_age=DATA_LINK_MAX_AGE)
        except TokenError as exc:
            return self.bad_link(request, exc)

        def work(conn):
            sub = lifecycle.current(conn, claims)
            return lifecycle.export_data(conn, sub) if sub else None

        record = await self.db(work)
        if record is None:
            return self.not_subscribed(request)
        return Response(json.dumps(record, indent=2, ensure_ascii=False) + "\n", media_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="mbc-digest-my-data.json"',
                                 "Cache-Control": "no-store"})

    async def delete_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub, page = await self._subscriber("preferences", token, request)
        if page:
            return page
        return self.render(request, "delete_data.html.j2", {"token": token})

    async def delete(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, f"/preferences/{token}/delete")
        sub, page = await self._subscriber("preferences", token, request)
        if page:
            return page
        await self.db(lifecycle.delete_data, sub)
        log.info("subscriber data deleted", extra={"action": "data_deleted"})
        return self.message(request, "Your data is deleted",
                            ["We've deleted your email address and everything we held about you. "
                             "You won't get any more email from us.", "Thank you for reading with us."],
                            [("/", "Go to the home page")])

    # ----- leaving -------------------------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub, page = await self._subscriber("unsubscribe", token, request)
        if page:
            return page
        return self.render(request, "unsubscribe.html.j2", {
            "token": token, "pause_weeks": PAUSE_WEEKS,
            "gets_sensitive": bool(self.sensitive & set(sub.topics)),
            "preferences_url": self.links_for(sub)["preferences_url"]})

    def _left(self, request: Request) -> HTMLResponse:
        return self.message(request, "You're unsubscribed",
                            ["We won't send you any more email.", "Thank you for reading with us. "
                             "If you ever want the digest again, you are always welcome back."],
                            [("/subscribe", "Subscribe again"), ("/", "Read our articles and feeds")])

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, f"/unsubscribe/{token}")
        try:
            claims = self.claims("unsubscribe", token)
        except TokenError as exc:
            return self.bad_link(request, exc)
        action = str(form.get("action", ""))
        at = self.now()
        if action == "leave":
            await self.db(lifecycle.unsubscribe, claims, at=at)
            log.info("unsubscribed", extra={"action": "unsubscribe", "via": "page"})
            return self._left(request)
        sub = await self.db(lifecycle.current, claims)
        if sub is None or sub.status != "confirmed":
            return self.not_subscribed(request)
        if action == "stop-sensitive":
            sub, still = await self.db(lifecycle.stop_sensitive_topics, sub, sensitive=self.sensitive,
                                       default_topics=self.library.default_topic_ids, at=at)
            if not still:
                return self.message(request, "You're unsubscribed",
                                    ["Hospice and end-of-life care was your only topic, so we've stopped all email.",
                                     "If you ever want the digest again, you are always welcome back."],
                                    [("/subscribe", "Subscribe again")])
            return self.message(request, "Done: no more end-of-life articles",
                                ["You'll keep getting the digest, without articles about hospice and end-of-life "
                                 "care."], [(self.links_for(sub)["preferences_url"], "See or change your topics")])
        weeks = _int(form.get("weeks"))
        if action == "pause" and weeks in PAUSE_WEEKS:
            sub = await self.db(lifecycle.pause, sub, weeks=weeks, at=at)
            return self.message(request, "Your emails are paused",
                                [f"We won't email you until {_human_date(sub.paused_until, sub.timezone)}. "
                                 "After that, your digest starts again by itself."],
                                [(self.links_for(sub)["preferences_url"], "Change your preferences")])
        return self.message(request, "Something was missing", ["Nothing has been changed. Please try again."],
                            [(f"/unsubscribe/{token}", "Go back")], status=400)

    async def one_click_page(self, request: Request) -> Response:
        return await self.unsubscribe_page(request)

    async def one_click(self, request: Request) -> Response:
        """RFC 8058: the mail provider POSTs ``List-Unsubscribe=One-Click``; no cookie, no CSRF token."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await self.form(request)
            ok = form is not None and form.get("List-Unsubscribe") == "One-Click"
        else:
            ok = (await request.body())[:200].strip() == ONE_CLICK_BODY
        if not ok:
            return self.message(request, "This address is for email programs",
                                ["Nothing has been changed. To stop getting email, use the unsubscribe link at "
                                 "the bottom of any digest."], [("/", "Go to the home page")], status=400)
        try:
            claims = self.claims("unsubscribe", request.path_params["token"])
        except TokenError as exc:
            return self.bad_link(request, exc)
        await self.db(lifecycle.unsubscribe, claims, at=self.now())
        log.info("unsubscribed", extra={"action": "unsubscribe", "via": "one-click"})
        return self._left(request)

    # ----- someone has died ----------------------------------------------------------------------------------

    async def deceased_form(self, request: Request) -> Response:
        return self.render(request, "someone_has_died.html.j2", {"form": {"email": ""}, "errors": {}})

    async def deceased(self, request: Request) -> Response:
        form = await self.form(request)
        if form is None or not self.csrf.valid(request, form):
            return self.csrf_failed(request, "/someone-has-died")
        raw = str(form.get("email", "")).strip()[:320]
        try:
            email = check_email(raw)
        except ValueError:
            return self.render(request, "someone_has_died.html.j2", {"form": {"email": raw}, "errors": {
                "email": "Please enter their email address." if not raw else
                "Please check the address. It should look like name@example.com."}}, status=400)
        at = self.now()
        if self.rate_limits:
            def limited(conn):
                key = ratelimit.key_for(ratelimit.DECEASED_PER_IP, request.client.host if request.client else "",
                                        secret=self.settings.secret_key)
                return not ratelimit.hit(conn, key, ratelimit.DECEASED_PER_IP, at=at)

            if await self.db(limited):
                return self.too_many(request)
        await self.db(lifecycle.report_deceased, email=email, at=at)
        log.info("deceased report handled", extra={"action": "deceased_suppressed"})
        return self.message(request, "We've stopped all email to that address",
                            ["We are so sorry for your loss.",
                             "Nothing more will be sent to that address, and we won't contact you about it. "
                             "You don't need to do anything else."],
                            [("/", "Go to the home page")])


def _int(value) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _human_date(when: datetime | None, timezone: str) -> str:
    if when is None:
        return ""
    try:
        local = when.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        local = when.astimezone(UTC)
    return f"{local:%A} {local.day} {local:%B %Y}"

