"""What every staff page shares: the session cookie, the role check, CSRF, rendering and the staff headers.

A request without a live session is sent to the login page; one whose role may not do it gets a 403 page.
Neither writes anything (a refused request changes nothing, not even the session's last use).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from starlette.datastructures import FormData, MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.content.loader import load_library
from pipeline.content.model import Library
from pipeline.editorial import sessions
from pipeline.web.handlers import Web

COOKIE = "mbc_staff"
WRITERS = ("editor", "reviewer", "admin")
REVIEWERS = ("reviewer",)
ADMINS = ("admin",)
ROLE_WORDS = {"editor": "write and submit articles", "reviewer": "write, and review others' articles",
              "admin": "write, and manage staff accounts"}


class StaffHeaders:
    """Every response under /staff/: never cached, never indexed. The app's CSP (no inline script) applies too."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Cache-Control"] = "no-store"
                headers["X-Robots-Tag"] = "noindex, nofollow"
            await send(message)

        await self.app(scope, receive, wrapped)


@dataclass(frozen=True, kw_only=True)
class Call:
    """A request that passed the session, role and (for POST) CSRF checks."""

    request: Request
    session: sessions.Session
    form: FormData | None
    at: datetime

    @property
    def account(self):
        return self.session.account


class Staff:
    def __init__(self, ctx, web: Web):
        self.ctx = ctx
        self.web = web
        self.settings = ctx.settings
        self.secure = self.settings.site_url.startswith("https://")
        from pipeline.web.static import asset_version

        self.css_version = asset_version(Path(self.settings.templates_dir).resolve() / "web" / "static" / "staff.css")

    @property
    def content_dir(self) -> Path:
        return Path(self.settings.content_dir)

    def library(self) -> Library:
        """Read afresh: the workbench writes content/ and must see its own saves."""
        library, _ = load_library(self.content_dir)
        return library

    def set_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(COOKIE, value, httponly=True, samesite="strict", secure=self.secure, path="/staff",
                            max_age=int(sessions.ABSOLUTE.total_seconds()))

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/staff", httponly=True, samesite="strict", secure=self.secure)

    async def session(self, request: Request, at: datetime) -> sessions.Session | None:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None

        def read(conn):
            return sessions.find(conn, cookie, at=at)

        return await self.web.db(read)

    def render(self, request: Request, template: str, values: dict | None = None, *, call: Call | None = None,
               status: int = 200) -> Response:
        return self.web.render(request, f"staff/{template}",
                               {"me": call.account if call else None, "nav": _nav(call),
                                "staff_css_version": self.css_version, **(values or {})},
                               status=status)

    def page(self, request: Request, heading: str, paragraphs: list[str], links=(), *, call: Call | None = None,
             status: int = 200) -> Response:
        return self.render(request, "message.html.j2", {"heading": heading, "paragraphs": paragraphs,
                                                        "links": list(links)}, call=call, status=status)

    def guard(self, roles: tuple[str, ...]):
        """Wrap a handler ``(staff, call) -> Response``: live full session, allowed role, CSRF on POST."""

        def wrap(handler: Callable[[Staff, Call], Awaitable[Response]]):
            async def endpoint(request: Request) -> Response:
                at = self.web.now()
                sess = await self.session(request, at)
                if sess is None or sess.stage != "full":
                    return RedirectResponse("/staff/login", status_code=303)
                if sess.account.role not in roles:
                    call = Call(request=request, session=sess, form=None, at=at)
                    return self.page(request, "Your account can't do this",
                                     [f"Your account's role is {sess.account.role}: it can "
                                      f"{ROLE_WORDS[sess.account.role]}. Nothing has been changed.",
                                      "If you need to do this, ask an admin."],
                                     [("/staff/", "Go to the dashboard")], call=call, status=403)
                form = None
                if request.method == "POST":
                    form, refused = await self.web.checked_form(request, "/staff/")
                    if refused is not None:
                        return refused
                await self.web.db(lambda conn: sessions.touch(conn, sess, at=at))
                return await handler(self, Call(request=request, session=sess, form=form, at=at))

            return endpoint

        return wrap


def _nav(call: Call | None) -> list[tuple[str, str]]:
    if call is None:
        return []
    links = [("/staff/", "Dashboard"), ("/staff/articles/new", "New article"), ("/staff/inbox", "Inbox"),
             ("/staff/digests", "Digests")]
    if call.account.role == "admin":
        links += [("/staff/admin/accounts", "Accounts"), ("/staff/admin/audit", "Audit log")]
    return links


def field(form: FormData | None, name: str, limit: int = 1000) -> str:
    value = form.get(name, "") if form is not None else ""
    return value[:limit] if isinstance(value, str) else ""
