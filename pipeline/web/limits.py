"""Request bodies bounded while they stream, for every route, before anything parses them.

``Content-Length`` alone proves nothing (a chunked body has none), so the limit is counted on the bytes as they
arrive: the first chunk past it stops the request with a 413 page, and no handler sees a byte more.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_MAX_BODY = 64 * 1024
WEBHOOK_MAX_BODY = 8 * 1024 * 1024  # SendGrid batches events; a few MB at most


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a request body passes its route's limit; the app answers 413."""

    def __init__(self, limit: int):
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def limit_for(path: str) -> int:
    return WEBHOOK_MAX_BODY if path.startswith("/webhooks/") else FORM_MAX_BODY


class BodyLimit:
    """Pure ASGI middleware. ``too_large(scope, limit)`` builds the 413 response for a body refused up front."""

    def __init__(self, app: ASGIApp, *, too_large: Callable, limit_for: Callable[[str], int] = limit_for):
        self.app = app
        self.too_large = too_large
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared and (not declared.isdigit() or int(declared) > limit):
            # Refused before reading: the connection closes rather than draining a body nobody will read.
            response = self.too_large(scope, limit)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, bounded, send)
