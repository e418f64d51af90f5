"""The web app: subscriber pages, feeds and the static site under public/, behind security headers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from pipeline import metrics
from pipeline.delivery import issue_rows, ledger, outbox
from pipeline.errors import PipelineError
from pipeline.subscribers.tokens import Signer
from pipeline.web import leaving, preferences, signup, staff, webhooks
from pipeline.web.handlers import Web
from pipeline.web.limits import BodyLimit, BodyTooLarge
from pipeline.web.security import Csrf, SecurityHeaders
from pipeline.web.static import PublicFiles, asset_version

log = logging.getLogger("pipeline.web")


def _default_timezone(ctx) -> str:
    try:
        return ctx.schedule.timezone
    except (PipelineError, OSError, AttributeError):
        return "America/New_York"


def create_app(ctx, *, clock: Callable[[], datetime] | None = None) -> Starlette:
    """``clock`` exists for tests; the web layer is the only place that reads the time."""
    settings = ctx.settings
    public = Path(settings.public_dir)
    public.mkdir(parents=True, exist_ok=True)
    assets = Path(settings.templates_dir).resolve() / "web" / "static"
    env = Environment(loader=FileSystemLoader(str(Path(settings.templates_dir).resolve())),
                      autoescape=select_autoescape(["html", "html.j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    web = Web(
        settings=settings, engine=ctx.engine, library=ctx.library(), env=env, signer=Signer(settings.secret_key),
        csrf=Csrf(settings.secret_key, secure=settings.site_url.startswith("https://")),
        now=clock or (lambda: datetime.now(UTC)), default_timezone=_default_timezone(ctx),
        rate_limits=settings.web_rate_limits,
        asset_versions={name: asset_version(assets / name) for name in ("site.css", "tz.js")},
    )

    def page(handler):
        return partial(handler, web)

    async def healthz(_request):
        return PlainTextResponse("ok", headers={"Cache-Control": "no-store"})

    def latest_counts():
        with ctx.engine.connect() as conn:
            return [(digest, fire, {state: n for state, n in ledger.counts(conn, issue_id).items()
                                    if state in ledger.STATES})
                    for digest, fire, issue_id in issue_rows.latest_issues(conn)]

    def outbox_depth():
        with ctx.engine.connect() as conn:
            st = outbox.status(conn)
        return st.counts, st.oldest_age(web.now())

    async def metrics_page(_request):
        rows = await run_in_threadpool(latest_counts)
        depth = await run_in_threadpool(outbox_depth)
        return Response(metrics.exposition(lambda: rows, lambda: depth), media_type=metrics.CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

    async def not_found(scope, receive, send):
        response = web.message(Request(scope), "We can't find that page",
                               ["It may have moved, or the address may have a typo."],
                               [("/", "Go to the home page"), ("/subscribe", "Get the email digest")], status=404)
        await response(scope, receive, send)

    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            return web.message(request, "We can't find that page", ["It may have moved, or the address may have a typo."],
                               [("/", "Go to the home page")], status=404)
        return PlainTextResponse(exc.detail or "", status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception):
        log.error("request failed: %s", type(exc).__name__, extra={"action": "web_error"})
        return HTMLResponse("<!doctype html><html lang=en><title>Sorry</title><h1>Sorry, something went wrong</h1>"
                            "<p>Nothing was lost. Please try again in a few minutes.</p>", status_code=500)

    routes = [
        Route("/healthz", healthz),
        # Off unless PIPELINE_METRICS=1: then answered like any missing page.
        *([Route("/metrics", metrics_page, methods=["GET"])] if settings.metrics else []),
        Route("/subscribe", page(signup.subscribe_form), methods=["GET"]),
        Route("/subscribe", page(signup.subscribe), methods=["POST"]),
        Route("/subscribe/resend", page(signup.resend), methods=["POST"]),
        Route("/confirm/{token}", page(signup.confirm_page), methods=["GET"]),
        Route("/confirm/{token}", page(signup.confirm), methods=["POST"]),
        Route("/preferences/{token}", page(preferences.preferences_page), methods=["GET"]),
        Route("/preferences/{token}", page(preferences.preferences), methods=["POST"]),
        Route("/preferences/{token}/pause", page(preferences.pause), methods=["POST"]),
        Route("/preferences/{token}/delete", page(preferences.delete_page), methods=["GET"]),
        Route("/preferences/{token}/delete", page(preferences.delete), methods=["POST"]),
        Route("/data/{token}", page(preferences.data), methods=["GET"]),
        Route("/unsubscribe/{token}", page(leaving.unsubscribe_page), methods=["GET"]),
        Route("/unsubscribe/{token}", page(leaving.unsubscribe), methods=["POST"]),
        Route("/u/{token}", page(leaving.one_click_page), methods=["GET"]),
        Route("/u/{token}", page(leaving.one_click), methods=["POST"]),
        Route("/someone-has-died", page(leaving.deceased_form), methods=["GET"]),
        Route("/someone-has-died", page(leaving.deceased), methods=["POST"]),
        Route("/stop/{token}", page(leaving.stop_page), methods=["GET"]),
        Route("/stop/{token}", page(leaving.stop), methods=["POST"]),
        # Signed by SendGrid instead of carrying a CSRF token.
        *webhooks.routes(ctx, clock=clock),
        staff.mount(ctx, web),  # the editors' workbench (pipeline/web/staff/)
        # The same stylesheet the feeds stage copies to public/static/, straight from its source.
        Mount("/static", app=PublicFiles(assets, cache_control="public, max-age=86400",
                                         not_found=not_found)),
        Mount("/", app=PublicFiles(public, not_found=not_found)),
    ]
    async def body_too_large(request: Request, exc: BodyTooLarge):
        response = web.too_large(request, exc.limit)
        response.headers["Connection"] = "close"
        return response

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, BodyTooLarge: body_too_large,
                                                      Exception: server_error})
    app.add_middleware(BodyLimit, too_large=lambda scope, limit: web.too_large(Request(scope), limit))
    app.add_middleware(SecurityHeaders, hsts=settings.site_url.startswith("https://"))
    app.state.web = web
    return app
