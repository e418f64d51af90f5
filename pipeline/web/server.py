"""Run the ASGI app under uvicorn in the foreground; uvicorn stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import uvicorn

from pipeline.web.app import create_app


def serve(ctx, *, host: str, port: int) -> None:
    config = uvicorn.Config(create_app(ctx), host=host, port=port, log_level="info", access_log=False,
                            proxy_headers=False)
    uvicorn.Server(config).run()
