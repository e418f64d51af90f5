"""Builds batches' links and encodes their requests in a worker process, beside the sender.

The sender's own process claims and records batches and keeps one request on the wire; with a worker, the CPU work
per recipient (signing two links and a Message-ID, writing the request's JSON) runs on the other core. Only for
backends that can prepare requests ahead of sending (SendGrid), and only for large issues: the worker takes about a
third of a second to start, so a send starts it while the database plans the issue. What it builds is byte for byte
what the sender would build itself.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime

from pipeline.delivery.backend import IssueMeta, RenderedVariant
from pipeline.digests.message import RecipientBuilder
from pipeline.scheduling.schedule import Digest
from pipeline.settings import Settings

# (variant key, the rendered variant the first time this key is sent, else None, [(subscriber_id, email, version)])
Group = tuple[str, RenderedVariant | None, list[tuple[int, str, int]]]

_state: dict = {}


# Stand-ins for each recipient's own parts in the one recipient built per issue to give every recipient's shape.
_MARKERS = ("\0email\0", "\0message-id\0", "\0unsubscribe\0", "\0preferences\0")


def _start(settings: Settings, digest: Digest, fire_at: datetime, preparer: Callable, sender_alive) -> None:
    # Ctrl-C in a terminal reaches every process of the group: the sender stops the send and closes this worker,
    # which on its own would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_sender, args=(sender_alive,), name="exit-with-sender", daemon=True).start()
    builder = RecipientBuilder(settings, digest, fire_at)
    _state.update(personal=builder.personal, prototype=builder.assemble(0, *_MARKERS), preparer=preparer, variants={})


def _exit_with_sender(sender_alive) -> None:
    """Leave as soon as the sender's end of this pipe closes. The worker is the forkserver's child, not the
    sender's, and holds both ends of its own task queue: after a kill -9 of the sender it would wait on that queue,
    and keep the forkserver alive, for ever (seen)."""
    try:
        sender_alive.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(0)


def _prepare(meta: IssueMeta, batch_id: str, groups: Sequence[Group]) -> list:
    personal, variants, prepare = _state["personal"], _state["variants"], _state["preparer"]
    out = []
    for key, variant, rows in groups:
        if variant is not None:
            variants[key] = variant
        out.append(prepare.prepare_like(meta, variants[key], _state["prototype"], _MARKERS,
                                        [(sid, (email, *personal(sid, version))) for sid, email, version in rows],
                                        batch_id))
    return out


def _usage() -> tuple[int, float]:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_maxrss, own.ru_utime + own.ru_stime


class BatchWorker:
    """One worker process; ``submit`` returns a Future of one prepared payload per group, in order."""

    def __init__(self, settings: Settings, digest: Digest, fire_at: datetime, preparer: Callable):
        # forkserver: never fork a parent that may be running threads (web server, scheduler, our sending thread).
        ctx = multiprocessing.get_context("forkserver")
        watched, self._alive = ctx.Pipe(duplex=False)  # the worker keeps only the reading end
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_start,
                                         initargs=(settings, digest, fire_at, preparer, watched))
        self._pool.submit(int)  # the process starts now, not with the first batch: a send plans its issue meanwhile
        self._known: set[str] = set()

    def submit(self, meta: IssueMeta, batch_id: str, groups: Sequence[tuple[str, RenderedVariant, list]]) -> Future:
        """``groups``: (key, rendered variant, claimed rows as (subscriber_id, email, token_version))."""
        payload: list[Group] = []
        for key, variant, rows in groups:
            payload.append((key, None if key in self._known else variant, rows))
            self._known.add(key)
        return self._pool.submit(_prepare, meta, batch_id, payload)

    def usage(self) -> tuple[float, float]:
        """The worker's peak resident memory (MB) and CPU seconds so far (benchmarks report them)."""
        peak_kb, cpu = self._pool.submit(_usage).result(timeout=30)
        return peak_kb / 1024, cpu

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._alive.close()
