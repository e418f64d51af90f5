"""Render many Markdown bodies at once, in worker processes when there are enough to be worth it.

Markdown rendering (about 1 ms a body) dominates a full build; everything else is cheap. Workers call the same
``body_html`` as everyone else, so the HTML is identical to what digests and pages get.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from pipeline.content.render import body_html

PARALLEL_MIN = 400  # below this, starting processes costs more than it saves


def render_bodies(bodies: Iterable[str], *, workers: int | None = None, parallel_min: int = PARALLEL_MIN) -> dict[str, str]:
    todo = list(dict.fromkeys(bodies))
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if workers < 2 or len(todo) < parallel_min:
        return {b: body_html(b) for b in todo}
    # forkserver: never fork a parent that may be running threads (web server, scheduler).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.content.render"])
    chunk = max(16, len(todo) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return dict(zip(todo, pool.map(body_html, todo, chunksize=chunk), strict=True))
