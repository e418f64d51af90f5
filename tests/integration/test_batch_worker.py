"""The batch worker process and its pipe: replies in order, errors passed on, and a worker that dies (even halfway
through a reply) is reported as lost instead of waited for."""

from __future__ import annotations

import os
import signal
import struct
import time
from datetime import UTC, datetime

import pytest

from pipeline.delivery.backend import IssueMeta, RenderedVariant
from pipeline.digests import batch_worker
from pipeline.digests.batch_worker import BatchWorker, WorkerLost
from pipeline.schedules import Digest

FIRE = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
META = IssueMeta(digest="weekly", issue_id=1, fire_at=FIRE, sender="MBC Digest <digest@example.org>",
                 list_id='"MBC Digest" <weekly.digest.example.org>')
DIGEST = Digest(name="weekly", title="MBC Digest: this week", cadence="weekly", topics=None)
VARIANT = RenderedVariant(key="v", subject="This week", html="<p>Hello</p>", text="Hello")


class EchoPreparer:
    """Answers with what it was given, so a test can tell which batch a reply belongs to; batch "bad" raises, and
    batch "unpicklable" answers with something that cannot go back through the pipe."""

    def prepare_like(self, meta, variant, prototype, markers, rows, batch_id):
        if batch_id == "bad":
            raise ValueError("this batch cannot be prepared")
        if batch_id == "unpicklable":
            return lambda: None
        return (batch_id, variant.key, [(sid, email) for sid, (email, *_links) in rows])


def _dies_halfway_through_its_reply(conn, *_args) -> None:
    """A worker that takes one request, writes the header of a 1 MiB reply and its first 4 KiB, then dies."""
    conn.recv()
    os.write(conn.fileno(), struct.pack("!i", 1 << 20) + b"\0" * 4096)
    os._exit(1)


def _leaves_a_child_holding_its_end(conn, *_args) -> None:
    """A worker that forks a process which keeps the worker's end of the pipe open, says its pid, and leaves."""
    conn.recv()
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    conn.send((True, pid))
    os._exit(0)


def _wait_until(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_replies_come_back_in_order_and_an_error_is_raised_for_its_own_batch_only(settings):
    worker = BatchWorker(settings, DIGEST, FIRE, EchoPreparer())
    try:
        rows = [(1, "reader1@example.org", 0), (2, "reader2@example.org", 0)]
        futures = [worker.submit(META, batch, [("v", VARIANT, rows)]) for batch in ("a", "bad", "unpicklable", "c")]
        assert futures[0].result(timeout=30) == [("a", "v", [(1, "reader1@example.org"), (2, "reader2@example.org")])]
        with pytest.raises(ValueError, match="cannot be prepared"):
            futures[1].result(timeout=30)
        with pytest.raises(RuntimeError, match="batch worker: .*pickle"):
            futures[2].result(timeout=30)
        assert futures[3].result(timeout=30)[0][0] == "c"
        assert not worker.lost
        pid = worker.pid
    finally:
        worker.close()
    assert _wait_until(lambda: not _alive(pid)), "the worker outlived close()"


def test_a_worker_that_dies_halfway_through_a_reply_is_lost_not_waited_for(monkeypatch, settings):
    monkeypatch.setattr(batch_worker, "_serve", _dies_halfway_through_its_reply)
    worker = BatchWorker(settings, DIGEST, FIRE, EchoPreparer())
    future = worker.submit(META, "a", [("v", VARIANT, [(1, "reader1@example.org", 0)])])
    with pytest.raises(WorkerLost, match="end of file during message"):
        future.result(timeout=30)  # the pool this replaced waited here for ever
    assert worker.lost
    with pytest.raises(WorkerLost):
        worker.submit(META, "b", [("v", VARIANT, [(2, "reader2@example.org", 0)])])
    started = time.monotonic()
    worker.close()
    assert time.monotonic() - started < 5  # nothing left to wait for


def test_a_worker_killed_with_batches_in_hand_fails_each_of_them_and_takes_no_more(settings):
    worker = BatchWorker(settings, DIGEST, FIRE, EchoPreparer())
    try:
        assert worker.submit(META, "a", [("v", VARIANT, [])]).result(timeout=30) == [("a", "v", [])]
        os.kill(worker.pid, signal.SIGSTOP)  # holds what it is handed, answering nothing
        held = [worker.submit(META, b, [("v", VARIANT, [])]) for b in ("b", "c")]
        os.kill(worker.pid, signal.SIGKILL)
        for future in held:
            with pytest.raises(WorkerLost, match="stopped"):
                future.result(timeout=30)
        assert _wait_until(lambda: worker.lost)
        with pytest.raises(WorkerLost):
            worker.submit(META, "d", [("v", VARIANT, [])])
    finally:
        worker.close()


def test_close_returns_even_while_another_process_holds_the_workers_end(monkeypatch, settings):
    monkeypatch.setattr(batch_worker, "_serve", _leaves_a_child_holding_its_end)
    worker = BatchWorker(settings, DIGEST, FIRE, EchoPreparer())
    holder = worker.submit(META, "a", []).result(timeout=30)
    try:
        started = time.monotonic()
        worker.close()  # the worker is gone, but its end of the pipe is not closed: no end of file comes
        assert time.monotonic() - started < 5
        assert worker.lost
    finally:
        os.kill(holder, signal.SIGKILL)
