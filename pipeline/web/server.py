"""Run the ASGI app under uvicorn in the foreground until SIGINT or SIGTERM, then return normally."""

from __future__ import annotations

import signal

import uvicorn

from pipeline.web.app import create_app


class _Stop(Exception):
    pass


def _raise_stop(_signum, _frame):
    raise _Stop


def serve(ctx, *, host: str, port: int) -> None:
    config = uvicorn.Config(create_app(ctx), host=host, port=port, log_level="info", access_log=False,
                            proxy_headers=False)
    # uvicorn shuts down gracefully, then re-raises the signal it caught through the handler that was installed
    # before it. Ours turn that into a normal return, so callers' cleanup (the scheduler) always runs.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
