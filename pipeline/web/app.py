"""The web app. For now: health check and the static site under public/."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles


def create_app(ctx) -> Starlette:
    public = ctx.settings.public_dir
    public.mkdir(parents=True, exist_ok=True)

    async def healthz(_request):
        return PlainTextResponse("ok")

    return Starlette(routes=[
        Route("/healthz", healthz),
        Mount("/", app=StaticFiles(directory=public, html=True, check_dir=False)),
    ])
