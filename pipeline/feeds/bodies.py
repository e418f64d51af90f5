"""Render and write article pages, in worker processes when there are enough to be worth it.

Markdown rendering (about 1 ms a body) dominates a full build, then the template and the write. All three run
in the workers, which call the same ``body_html`` as everyone else, so the HTML is identical to what digests get.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic_files import write_atomic
from pipeline.content.model import Article, Library
from pipeline.content.render import body_html
from pipeline.feeds.model import Site
from pipeline.feeds.pages import Pages, environment

PARALLEL_MIN = 400  # below this, starting processes costs more than it saves


@dataclass(frozen=True, kw_only=True)
class PageJob:
    """Everything a worker needs to build its own Pages (topics only: articles travel in the chunks)."""

    templates_dir: Path
    site: Site
    library: Library
    css_version: str
    articles_dir: Path


_worker: tuple[PageJob, Pages] | None = None


def _pages(job: PageJob) -> Pages:
    global _worker
    if _worker is None or _worker[0] != job:
        _worker = (job, Pages(environment(job.templates_dir), site=job.site, library=job.library,
                              css_version=job.css_version))
    return _worker[1]


def _leave_with_parent(lifeline) -> None:
    """Pool initializer: end this worker as soon as the build that started it is gone, even by kill -9.

    The pool's task queue cannot tell us: every worker holds both its ends, so a worker whose parent died
    would finish the pages already queued and then wait for ever. ``lifeline`` is the read end of a pipe
    whose only writer is the parent, so its end of file means exactly that."""

    def watch() -> None:
        try:
            lifeline.recv_bytes()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="leave-with-parent", daemon=True).start()


def _write_chunk(job: PageJob, chunk: Sequence[Article], keep: frozenset[str]) -> list[tuple[bool, str | None]]:
    pages = _pages(job)
    out = []
    for a in chunk:
        html = body_html(a.body)
        changed = write_atomic(job.articles_dir / f"{a.slug}.html", pages.article(a, html))
        out.append((changed, html if a.slug in keep else None))
    return out


def write_pages(job: PageJob, articles: Sequence[Article], *, keep_html: frozenset[str] = frozenset(),
                workers: int | None = None, parallel_min: int = PARALLEL_MIN) -> tuple[int, dict[str, str]]:
    """Write one page per article. Returns (pages changed, body HTML of the slugs in ``keep_html``)."""
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if workers < 2 or len(articles) < parallel_min:
        results = _write_chunk(job, articles, keep_html)
    else:
        job.articles_dir.mkdir(parents=True, exist_ok=True)
        # forkserver: never fork a parent that may be running threads (web server, scheduler).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["pipeline.feeds.bodies"])
        size = max(16, len(articles) // (workers * 6) + 1)
        chunks = [articles[i:i + size] for i in range(0, len(articles), size)]
        results = []
        lifeline, alive = ctx.Pipe(duplex=False)
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_leave_with_parent,
                                     initargs=(lifeline,)) as pool:
                for part in pool.map(_write_chunk, [job] * len(chunks), chunks, [keep_html] * len(chunks)):
                    results.extend(part)
        finally:
            alive.close()
            lifeline.close()
    html = {a.slug: h for a, (_, h) in zip(articles, results, strict=True) if h is not None}
    return sum(changed for changed, _ in results), html
