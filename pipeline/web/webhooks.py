"""POST /webhooks/sendgrid: SendGrid's Event Webhook. Verified first; an unverified request changes nothing."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pipeline import metrics
from pipeline.delivery import events
from pipeline.errors import ConfigError
from pipeline.web.limits import WEBHOOK_MAX_BODY

log = logging.getLogger("pipeline.web.webhooks")

MAX_BODY = WEBHOOK_MAX_BODY
MAX_DEPTH = 16  # an event batch is an array of flat objects; SendGrid nests two or three levels at most
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON in ``body`` nests arrays and objects deeper than ``limit``, found without parsing it (a
    parser recurses, and 100,000 nested arrays exhaust its stack). Strings go first, brackets in them don't count."""
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for b in brackets:
        depth += 1 if b in b"[{" else -1
        if depth > limit:
            return True
    return False


class SendGridWebhook:
    def __init__(self, ctx, *, clock: Callable[[], datetime] | None = None):
        self.ctx = ctx
        self.now = clock or (lambda: datetime.now(UTC))
        self._key = None

    def key(self):
        if self._key is None:
            configured = self.ctx.settings.sendgrid_webhook_public_key
            if not configured:
                raise ConfigError("PIPELINE_SENDGRID_WEBHOOK_PUBLIC_KEY: not set; events cannot be verified")
            self._key = events.load_public_key(configured)
        return self._key

    async def handle(self, request: Request) -> Response:
        try:
            key = self.key()
        except ConfigError as exc:
            log.error("%s", exc, extra={"action": "webhook_not_configured"})
            return PlainTextResponse("event webhook not configured", status_code=503)
        # Bounded while it streams, even where this route is mounted without pipeline.web.limits.BodyLimit.
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return PlainTextResponse("too large", status_code=413, headers={"Connection": "close"})
            chunks.append(chunk)
        body = b"".join(chunks)
        now = self.now()
        try:
            events.verify(key, signature=request.headers.get(events.SIGNATURE_HEADER),
                          timestamp=request.headers.get(events.TIMESTAMP_HEADER), body=body, now=now)
        except events.SignatureError as exc:
            log.warning("event webhook refused: %s", exc, extra={"action": "webhook_refused", "status": exc.status})
            return PlainTextResponse(str(exc), status_code=exc.status)
        if too_deep(body):
            return PlainTextResponse(f"JSON nested deeper than {MAX_DEPTH} levels", status_code=400)
        try:
            batch = json.loads(body)
        except (ValueError, RecursionError):
            return PlainTextResponse("body is not JSON", status_code=400)
        if not isinstance(batch, list):
            return PlainTextResponse("expected a JSON array of events", status_code=400)
        metrics.webhook_events(e.get("event") for e in batch if isinstance(e, dict))
        applied = await run_in_threadpool(events.apply_events, self.ctx.engine, batch, at=now)
        return JSONResponse(applied.as_dict())


def sendgrid_webhook(ctx, *, clock: Callable[[], datetime] | None = None):
    """The request handler for one app: ``async handler(request) -> Response``."""
    return SendGridWebhook(ctx, clock=clock).handle


def routes(ctx, *, clock: Callable[[], datetime] | None = None) -> list[Route]:
    """Mount with ``Starlette(routes=[*webhooks.routes(ctx), ...])``. It needs no CSRF token: it is signed."""
    return [Route("/webhooks/sendgrid", sendgrid_webhook(ctx, clock=clock), methods=["POST"],
                  name="sendgrid_webhook")]
