"""What every subscriber page shares: rendering, the common error pages, the form and token checks, and the database.

Pages stay thin: parse the request, call the lifecycle and queue its email in one transaction, render a template.
GET never changes state (link scanners follow every link), so every change is a POST behind a button.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio.to_thread
from jinja2 import Environment
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from pipeline.content.model import Library
from pipeline.delivery import outbox
from pipeline.feeds.model import ALL, Site, feed_links
from pipeline.settings import Settings
from pipeline.subscribers import lifecycle
from pipeline.subscribers.model import Subscriber
from pipeline.subscribers.tokens import Signer, TokenClaims, TokenError
from pipeline.web.security import Csrf

log = logging.getLogger("pipeline.web")

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# What each kind of link is for and how long it works, so an expired link's page names the right one.
LINK_KINDS = {
    "signup": ("Links to confirm a subscription work for 7 days.", "Signing up again only takes a minute.",
               ("/subscribe", "Go to the sign-up page")),
    "data": ("Links to download your data work for 1 hour.",
             "Open the preferences link in any digest from us and ask for your data again.", ("/", "Go to the home page")),
    "stop": ("Links to stop all email work for 30 days.",
             "Every email from us has an unsubscribe link at the bottom, which stops all email at once.",
             ("/someone-has-died", "Go to the page for someone who has died")),
}
_GENERIC_LINK = ("", "", ("/subscribe", "Go to the sign-up page"))


@dataclass(frozen=True, kw_only=True)
class Posted:
    """A subscriber's form that passed the CSRF check, with the token from its URL."""

    token: str
    form: FormData
    sub: Subscriber


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
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()

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

    def bad_link(self, request: Request, error: TokenError, purpose: str = "") -> HTMLResponse:
        expired = "expired" in str(error)
        how_long, what_now, link = LINK_KINDS.get(purpose, _GENERIC_LINK)
        if expired:
            paragraphs = ["Nothing has been changed.", f"{how_long} {what_now}".strip()]
        else:
            paragraphs = ["Nothing has been changed.",
                          "It may be missing a part, which can happen when a link is copied or split across lines. "
                          "Please try the link in your most recent email from us."]
        return self.message(request, "This link has expired" if expired else "This link doesn't work",
                            [p for p in paragraphs if p], [link], status=400)

    def not_subscribed(self, request: Request) -> HTMLResponse:
        return self.message(
            request, "You're not subscribed",
            ["We don't have a subscription for this link, so we won't send you any email.",
             "If you've just unsubscribed or deleted your data, that's why. You are always welcome back."],
            [("/subscribe", "Subscribe again")])

    def form_refused(self, request: Request, back: str, cause: str) -> HTMLResponse:
        """The page for a form we did not act on, naming the real cause."""
        status, says = {
            "cookie": (403, "For your safety, this form needs a cookie from our own page, and none came with it. "
                            "Please turn cookies on for this site (or leave private browsing), then reload the page."),
            "token": (403, "For your safety, this form needs to be sent from our own page, and this one was not, "
                           "or the page was open a long time. Please reload the page and try again."),
            "content-type": (415, "This address only takes forms sent from our own page, and this request was sent "
                                  "in another format. Please use the form on the page."),
            "malformed": (400, "The form arrived in a shape we cannot read (it may be broken, or have far too many "
                               "fields). Please reload the page and use the form there."),
        }[cause]
        return self.message(request, "Please try that again", [says, "Nothing has been changed."],
                            [(back, "Go back to the page")], status=status)

    def too_large(self, request: Request, limit: int) -> HTMLResponse:
        return self.message(request, "That was too much to send",
                            [f"This form takes at most {limit // 1024} KB, and more than that was sent. "
                             "Nothing has been changed.", "Please go back, shorten what you typed, and try again."],
                            [("/", "Go to the home page")], status=413)

    def too_many(self, request: Request) -> HTMLResponse:
        return self.message(
            request, "Please wait a little while",
            ["We've had a lot of requests from your connection, so we've paused this form for now. "
             "Please try again in an hour."],
            [("/", "Go to the home page")], status=429)

    async def form(self, request: Request) -> tuple[FormData | None, str]:
        """(the posted form, "") or (None, why it was not read: "content-type"). Size is bounded while the body
        streams (pipeline.web.limits), before this parses a byte."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not ctype and not await request.body():
            return FormData(), ""  # a form with no fields at all: its CSRF check names what is missing
        if ctype not in FORM_TYPES:
            return None, "content-type"
        try:
            return await request.form(max_files=0, max_fields=60), ""
        except HTTPException:  # Starlette's word for a multipart body it cannot parse, or too many fields
            return None, "malformed"

    async def checked_form(self, request: Request, back: str) -> tuple[FormData | None, HTMLResponse | None]:
        """(form, None), or (None, the page naming why the form was refused, linking ``back``)."""
        form, cause = await self.form(request)
        if form is not None:
            cause = self.csrf.problem(request, form)
        if cause:
            return None, self.form_refused(request, back, cause)
        return form, None

    def verified(self, request: Request, purpose: str, token: str, *,
                 max_age: int | None = None) -> tuple[TokenClaims | None, HTMLResponse | None]:
        """(claims, None), or (None, the bad-link page)."""
        try:
            return self.signer.verify(purpose, token, max_age=max_age), None
        except TokenError as exc:
            return None, self.bad_link(request, exc, purpose)

    async def subscriber(self, request: Request, purpose: str,
                         token: str) -> tuple[Subscriber | None, HTMLResponse | None]:
        """(confirmed subscriber, None), or (None, the page to show instead)."""
        claims, page = self.verified(request, purpose, token)
        if page:
            return None, page
        sub = await self.db(lifecycle.current, claims)
        if sub is None or sub.status != "confirmed":
            return None, self.not_subscribed(request)
        return sub, None

    async def posted(self, request: Request, back: str) -> tuple[Posted | None, HTMLResponse | None]:
        """The prologue of every POST to a preferences link: CSRF check, then the confirmed subscriber.

        ``back`` is the page the CSRF failure links to, with ``{token}`` in it.
        """
        token = request.path_params["token"]
        form, page = await self.checked_form(request, back.format(token=token))
        if page:
            return None, page
        sub, page = await self.subscriber(request, "preferences", token)
        if page:
            return None, page
        return Posted(token=token, form=form, sub=sub), None

    def url(self, path: str) -> str:
        return self.base_url + path

    def links_for(self, sub: Subscriber) -> dict[str, str]:
        return {
            "preferences_url": self.url("/preferences/" + self.signer.sign("preferences", sub.id, sub.token_version)),
            "unsubscribe_url": self.url("/unsubscribe/" + self.signer.sign("unsubscribe", sub.id, sub.token_version)),
        }

    def queue(self, conn, msg: EmailMessage, *, at: datetime, subscriber_id: int | None = None,
              signup_request_id: int | None = None) -> None:
        """Write ``msg`` to the outbox inside the caller's transaction (``web.db``): it exists exactly when the change
        that causes it does, and the outbox sender in `pipeline run` delivers it. A page never talks to a relay."""
        outbox.enqueue(conn, msg, at=at, subscriber_id=subscriber_id, signup_request_id=signup_request_id)

    def parse_topics(self, values: list[str]) -> tuple[tuple[str, ...], str | None]:
        known = set(self.library.topic_ids)
        picked = [v for v in values if isinstance(v, str)]
        if any(v not in known for v in picked):
            return (), "Please choose topics from the list."
        if not picked:
            return (), "Please choose at least one topic."
        return tuple(t for t in self.library.topic_ids if t in picked), None


def int_or_none(value) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def human_date(when: datetime | None, timezone: str) -> str:
    if when is None:
        return ""
    try:
        local = when.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        local = when.astimezone(UTC)
    return f"{local:%A} {local.day} {local:%B %Y}"
