"""The SendGrid backend: the Backend port on top of the request encoder (``sendgrid_payload``) and the HTTP
client with its retries (``sendgrid_client``)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from email.message import EmailMessage

from pipeline.delivery.backend import IssueMeta, Outcome, Recipient, RenderedVariant
from pipeline.delivery.sendgrid_client import MailSendClient
from pipeline.delivery.sendgrid_payload import BatchPreparer, Prepared, message_payload
from pipeline.delivery.sendgrid_spec import MAX_PERSONALIZATIONS
from pipeline.errors import DeliveryHalted, RelayUnavailable


class SendGridBackend:
    name = "sendgrid"
    max_batch = MAX_PERSONALIZATIONS

    def __init__(self, api_key: str, *, host: str = "https://api.sendgrid.com", tracking: bool = False,
                 timeout: float = 30.0, max_retries: int | None = None, backoff: float = 0.5,
                 max_backoff: float = 60.0, patience: float = 120.0, sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.client = MailSendClient(api_key, host=host, timeout=timeout, max_retries=max_retries, backoff=backoff,
                                     max_backoff=max_backoff, patience=patience, sleep=sleep, rng=rng, clock=clock,
                                     monotonic=monotonic)
        self.tracking = tracking
        self._preparer = BatchPreparer(tracking=tracking)

    @property
    def requests(self) -> int:
        return self.client.requests

    def post(self, body: str) -> int:
        return self.client.post(body)

    def __repr__(self) -> str:
        return f"SendGridBackend(host={self.client.host!r})"

    def send_batch(self, issue: IssueMeta, variant: RenderedVariant,
                   recipients: Sequence[Recipient]) -> list[Outcome]:
        return self.send_prepared(self.prepare_batch(issue, variant, recipients, uuid.uuid4().hex[:16]))

    def prepare_batch(self, issue: IssueMeta, variant: RenderedVariant, recipients: Sequence[Recipient],
                      batch_id: str) -> Prepared:
        return self._preparer(issue, variant, recipients, batch_id)

    def batch_preparer(self) -> BatchPreparer:
        """What prepare_batch does, as an object without the HTTP client: it can be sent to a worker process."""
        return BatchPreparer(tracking=self.tracking)

    def send_prepared(self, prepared: Prepared) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for body, ids, refused in prepared:
            outcomes.extend(refused)
            if not body:
                continue
            try:
                status = str(self.post(body))
            except DeliveryHalted as exc:
                # Nobody's own failure: what went out is kept and the rest waits, but a request that may have
                # been taken leaves its recipients unknown.
                if isinstance(exc, RelayUnavailable) and exc.in_doubt:
                    outcomes.extend(Outcome(i, "unknown", f"{exc}; it may or may not have been accepted")
                                    for i in ids)
                exc.outcomes = tuple(outcomes)
                raise
            outcomes.extend([Outcome(i, "sent", None, status) for i in ids])  # positional: a thousand a batch
        return outcomes

    def send_message(self, msg: EmailMessage) -> None:
        """One transactional message (confirmation, welcome), with tracking off like every send."""
        self.post(json.dumps(message_payload(msg, tracking=self.tracking), ensure_ascii=False))

    def close(self) -> None:
        self._preparer.clear()
