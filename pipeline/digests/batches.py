"""Turning a claimed batch into backend work, and the backend's answer into one outcome per recipient."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.delivery.backend import Backend, Outcome, PreparesBatches, Recipient, RenderedVariant
from pipeline.delivery.issue_ledger import Claim
from pipeline.digests.batch_worker import BatchWorker, WorkerLost
from pipeline.digests.message import RecipientBuilder
from pipeline.digests.plan import IssuePlan
from pipeline.digests.render import DigestRenderer
from pipeline.errors import DeliveryError, DeliveryHalted, DeliveryUnknown

log = logging.getLogger("pipeline.digests.send")


def complete_outcomes(outcomes: list[Outcome], ids: list[int], *, state: str = "unknown",
                       reason: str = "no outcome from the backend") -> list[Outcome]:
    """A backend that forgets a recipient leaves its outcome unknown, never silently sent or retried (a halted
    backend: the recipients it did not get to wait)."""
    seen = {o.subscriber_id for o in outcomes}
    return outcomes + [Outcome(subscriber_id=i, state=state, reason=reason) for i in ids if i not in seen]


@dataclass(frozen=True, kw_only=True)
class Group:
    key: str
    ids: list[int]
    recipients: list[Recipient]
    payload: object | None  # the backend's prepared requests, when it can prepare them
    outcomes: list[Outcome]  # decided without sending (variant not in this run's plan)


class BatchSender:
    """Turns a batch's rows into backend work: one group per variant, rendered once per variant. With a worker
    process, the links and requests of a batch are built there while this process goes on."""

    def __init__(self, backend: Backend, plan: IssuePlan, meta, renderer: DigestRenderer, builder: RecipientBuilder):
        self.backend, self.plan, self.meta = backend, plan, meta
        self.renderer, self.builder = renderer, builder
        self.rendered: dict[str, RenderedVariant] = {}
        self._prepare = backend.prepare_batch if isinstance(backend, PreparesBatches) else None
        self.worker: BatchWorker | None = None
        self._lost: list[BatchWorker] = []  # workers that died, closed with the sender
        self.halt: DeliveryHalted | None = None  # set on the sending thread; the send then claims no more
        self._lost_lock = threading.Lock()

    def _groups(self, claim: Claim) -> tuple[list[tuple[str, list[tuple[int, str, int]]]], list[Group]]:
        """The rows to send as (subscriber_id, email, token_version), by variant, and groups decided without sending."""
        todo, decided = [], []
        for key, members in claim.by_variant().items():
            if key not in self.plan.variants:  # planned by a concurrent run with other content: retry next run
                ids = [sid for sid, _email, _version in members]
                decided.append(Group(key=key, ids=ids, recipients=[], payload=None, outcomes=[
                    Outcome(subscriber_id=i, state="failed", reason="variant not in this run's plan") for i in ids]))
                continue
            if key not in self.rendered:
                self.rendered[key] = self.renderer.render(self.plan, self.plan.variants[key])
            todo.append((key, members))
        return todo, decided

    def build(self, claim: Claim) -> list[Group]:
        todo, groups = self._groups(claim)
        build = self.builder.build
        for key, members in todo:
            recipients = [build(sid, email, version) for sid, email, version in members]
            payload = (self._prepare(self.meta, self.rendered[key], recipients, claim.batch_id)
                       if self._prepare is not None else None)
            groups.append(Group(key=key, ids=[r.subscriber_id for r in recipients], recipients=recipients,
                                 payload=payload, outcomes=[]))
        return groups

    def start(self, claim: Claim) -> Callable[[], list[Group]]:
        """Begin preparing a claimed batch; the returned call gives the result (waiting for the worker, if any)."""
        worker = self.worker
        if worker is not None:
            todo, decided = self._groups(claim)
            try:
                future = worker.submit(self.meta, claim.batch_id,
                                       [(key, self.rendered[key], rows) for key, rows in todo])
            except WorkerLost:  # it died before this batch: build it here
                self._worker_lost(worker)
            else:
                def result() -> list[Group]:
                    try:
                        payloads = future.result()
                    except WorkerLost:  # it died with this batch in hand: build it here
                        self._worker_lost(worker)
                        return self.build(claim)
                    return decided + [Group(key=key, ids=[sid for sid, _email, _version in rows], recipients=[],
                                             payload=payload, outcomes=[])
                                      for (key, rows), payload in zip(todo, payloads, strict=True)]
                return result
        groups = self.build(claim)
        return lambda: groups

    def _worker_lost(self, worker: BatchWorker) -> None:
        """Carry on without a worker that died; the claiming and the main thread may both find out."""
        with self._lost_lock:
            if self.worker is not worker:
                return
            self.worker = None
            self._lost.append(worker)
        log.warning("the batch worker stopped; preparing batches in this process",
                    extra={"action": "digest_worker_lost"})

    def deliver(self, groups: list[Group]) -> list[Outcome]:
        """Runs on the sending thread. Only a whole-batch failure of the backend is mapped here."""
        outcomes: list[Outcome] = []
        for group in groups:
            if group.outcomes:
                outcomes += group.outcomes
                continue
            if self.halt is not None:
                outcomes += complete_outcomes([], group.ids, state="deferred", reason=str(self.halt))
                continue
            try:
                if group.payload is not None:
                    got = list(self.backend.send_prepared(group.payload))
                else:
                    got = list(self.backend.send_batch(self.meta, self.rendered[group.key], group.recipients))
            except DeliveryUnknown as exc:
                got = [Outcome(subscriber_id=i, state="unknown", reason=str(exc)) for i in group.ids]
            except DeliveryHalted as exc:
                self.halt = exc
                outcomes += complete_outcomes(list(exc.outcomes), group.ids, state="deferred", reason=str(exc))
                continue
            except DeliveryError as exc:
                got = [Outcome(subscriber_id=i, state="failed", reason=str(exc)) for i in group.ids]
            outcomes += complete_outcomes(got, group.ids)
        return outcomes

    def close(self) -> None:
        self.rendered.clear()
        for worker in [*self._lost, self.worker]:
            if worker is not None:
                worker.close()
        self.worker, self._lost = None, []
