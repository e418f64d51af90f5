"""Security headers on every response, and CSRF protection by a signed double-submit cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Tokens live in URLs; no-referrer keeps them from leaking to any linked site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

CSRF_COOKIE = "mbc_csrf"
CSRF_FIELD = "csrf_token"


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers without buffering bodies (static files stay fast)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False):
        self.app = app
        self.headers = dict(HEADERS)
        if hsts:
            self.headers["Strict-Transport-Security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Csrf:
    """The cookie holds a random value; forms carry its HMAC. A cross-site page can read neither."""

    def __init__(self, secret: str, *, secure: bool):
        self._key = hashlib.sha256(("csrf:" + secret).encode()).digest()
        self.secure = secure

    def _mac(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    def cookie_for(self, request: Request) -> tuple[str, bool]:
        """(cookie value, is_new)."""
        value = request.cookies.get(CSRF_COOKIE, "")
        if 20 <= len(value) <= 100:
            return value, False
        return secrets.token_urlsafe(32), True

    def field_value(self, cookie: str) -> str:
        return self._mac(cookie)

    def set_cookie(self, response: Response, cookie: str) -> None:
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="lax", secure=self.secure, path="/")

    def problem(self, request: Request, form) -> str:
        """"" when the form carries the MAC of its cookie; else "cookie" (none came) or "token" (no match)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie:
            return "cookie"
        sent = form.get(CSRF_FIELD, "")
        if not isinstance(sent, str) or not sent or not hmac.compare_digest(self._mac(cookie), sent):
            return "token"
        return ""

    def valid(self, request: Request, form) -> bool:
        return not self.problem(request, form)
