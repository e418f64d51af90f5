"""Builds batches' links and encodes their requests in a worker process, beside the sender.

The sender's own process claims and records batches and keeps one request on the wire; with a worker, the CPU work
per recipient (signing two links and a Message-ID, writing the request's JSON) runs on the other core. Only for
backends that can prepare requests ahead of sending (SendGrid), and only for large issues: the worker takes about a
third of a second to start, so a send starts it while the database plans the issue. What it builds is byte for byte
what the sender would build itself.

Sender and worker share one pipe and nothing else: each end is held by one process only, so either one's death is
the other's end of file, even halfway through a message. (``ProcessPoolExecutor`` keeps both ends of its result
pipe in the sender, and waits for ever on a result whose writer was killed mid-message: seen, under load.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime

from pipeline.delivery.backend import IssueMeta, RenderedVariant
from pipeline.digests.message import RecipientBuilder
from pipeline.schedules import Digest
from pipeline.settings import Settings

# (variant key, the rendered variant the first time this key is sent, else None, [(subscriber_id, email, version)])
Group = tuple[str, RenderedVariant | None, list[tuple[int, str, int]]]

# Stand-ins for each recipient's own parts in the one recipient built per issue to give every recipient's shape.
_MARKERS = ("\0email\0", "\0message-id\0", "\0unsubscribe\0", "\0preferences\0")
_STOP_WAIT = 10.0  # seconds a closing worker gets to finish what it holds before it is killed


class WorkerLost(Exception):
    """The worker process is gone (killed, or its pipe broke); what it held must be built elsewhere."""


def _serve(conn, settings: Settings, digest: Digest, fire_at: datetime, preparer) -> None:
    """The worker's loop: one request in, one ``(ok, value)`` out, in order, until the sender's end closes."""
    # Ctrl-C in a terminal reaches every process of the group: the sender stops the send and closes this worker,
    # which on its own would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    builder = RecipientBuilder(settings, digest, fire_at)
    state = {"personal": builder.personal, "prototype": builder.assemble(0, *_MARKERS), "preparer": preparer,
             "variants": {}}
    calls = {"prepare": _prepare, "usage": _usage}
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the sender closed its end, or died
            return
        if request is None:
            return
        kind, *args = request
        try:
            reply = (True, calls[kind](state, *args))
        except Exception as exc:  # noqa: BLE001 - handed to the sender, which raises it
            reply = (False, exc)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - a reply that does not pickle (nothing was written)
            with contextlib.suppress(OSError):
                conn.send((False, RuntimeError(f"batch worker: {type(exc).__name__}: {exc}")))


def _prepare(state: dict, meta: IssueMeta, batch_id: str, groups: Sequence[Group]) -> list:
    personal, variants, prepare = state["personal"], state["variants"], state["preparer"]
    out = []
    for key, variant, rows in groups:
        if variant is not None:
            variants[key] = variant
        out.append(prepare.prepare_like(meta, variants[key], state["prototype"], _MARKERS,
                                        [(sid, (email, *personal(sid, version))) for sid, email, version in rows],
                                        batch_id))
    return out


def _usage(_state: dict) -> tuple[int, float]:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_maxrss, own.ru_utime + own.ru_stime


def _stopped(exc: BaseException) -> str:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"the batch worker stopped ({detail})"


class BatchWorker:
    """One worker process; ``submit`` returns a Future of one prepared payload per group, in order. Once the
    process is gone, ``submit`` raises WorkerLost, and so does every Future it had not answered."""

    def __init__(self, settings: Settings, digest: Digest, fire_at: datetime, preparer: Callable):
        # forkserver: never fork a parent that may be running threads (web server, scheduler, our sending thread).
        ctx = multiprocessing.get_context("forkserver")
        # The forkserver keeps the standard fds of the process that starts it: start it before the pipe exists, so
        # it can never hold the worker's end (a sender run with stdin closed would hand it fd 0).
        multiprocessing.forkserver.ensure_running()
        ours, theirs = ctx.Pipe()
        # Started now, not with the first batch: a send plans its issue meanwhile.
        self._process = ctx.Process(target=_serve, args=(theirs, settings, digest, fire_at, preparer),
                                    name="digest-batch-worker", daemon=True)
        self._process.start()
        theirs.close()
        self._conn = ours
        self._waiting: deque[Future] = deque()  # answered in order: the worker does one request at a time
        self._send_lock = threading.Lock()
        self._lost: str | None = None
        self._known: set[str] = set()
        self._reader = threading.Thread(target=self._read, name="digest-batch-results", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def lost(self) -> bool:
        """Whether the worker is known to be gone: from then on, nothing more is handed to it."""
        return self._lost is not None

    def _read(self) -> None:
        # Never takes the send lock: a sender blocked on a full pipe needs this thread to keep draining replies.
        try:
            while True:
                ok, value = self._conn.recv()
                future = self._waiting.popleft()
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except Exception as exc:  # noqa: BLE001 - end of file, a broken pipe, or a reply cut short
            self._lose(_stopped(exc))

    def _lose(self, why: str) -> None:
        self._lost = self._lost or why
        while True:  # the reader and a caller may both drain
            try:
                future = self._waiting.popleft()
            except IndexError:
                return
            if not future.done():
                future.set_exception(WorkerLost(self._lost))

    def _call(self, *request) -> Future:
        future: Future = Future()
        with self._send_lock:
            if self._lost is not None:
                raise WorkerLost(self._lost)
            self._waiting.append(future)
            try:
                self._conn.send(request)
            except (OSError, ValueError) as exc:  # its end is closed: it died before taking this
                self._lose(_stopped(exc))
                raise WorkerLost(self._lost) from exc
        if self._lost is not None:  # lost while we were handing it over: the reader may have drained already
            self._lose(self._lost)
        return future

    def submit(self, meta: IssueMeta, batch_id: str, groups: Sequence[tuple[str, RenderedVariant, list]]) -> Future:
        """``groups``: (key, rendered variant, claimed rows as (subscriber_id, email, token_version))."""
        payload: list[Group] = [(key, None if key in self._known else variant, rows) for key, variant, rows in groups]
        future = self._call("prepare", meta, batch_id, payload)
        self._known.update(key for key, _variant, _rows in groups)
        return future

    def usage(self) -> tuple[float, float]:
        """The worker's peak resident memory (MB) and CPU seconds so far (benchmarks report them)."""
        peak_kb, cpu = self._call("usage").result(timeout=30)
        return peak_kb / 1024, cpu

    def close(self) -> None:
        """Ask the worker to leave once it has answered what it holds; kill it if it does not in time."""
        with self._send_lock:
            if self._lost is None:
                try:
                    self._conn.send(None)
                except (OSError, ValueError):
                    pass
            elif self._process.is_alive():  # alive but lost (a reply that could not be read): nothing to wait for
                self._process.kill()
        self._process.join(_STOP_WAIT)
        if self._process.exitcode is None:
            self._process.kill()
            self._process.join()
        # The worker's end closed with it; shutting ours down as well wakes the reader even if some other process
        # still held that end.
        with socket.socket(fileno=os.dup(self._conn.fileno())) as end, contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        self._reader.join()
        self._conn.close()
        self._process.close()
