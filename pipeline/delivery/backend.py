"""The delivery port: what every backend (memory, file, smtp, sendgrid) accepts and returns.

A backend gets one rendered variant and a batch of its recipients. The variant's html and text carry
placeholders (``-unsubscribe_url-``…); each recipient brings the values for them, as SendGrid's
``substitutions`` do. Backends that need whole messages build them with ``pipeline.delivery.mime``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable

# "deferred": not sent, through nobody's own fault (the relay stayed away, a setting is wrong): the row waits.
OUTCOME_STATES = ("sent", "failed", "unknown", "deferred")


@dataclass(frozen=True, kw_only=True)
class IssueMeta:
    """What is common to every message of one issue."""

    digest: str
    issue_id: int | None
    fire_at: datetime  # also the Date header, so a re-run builds the same bytes
    sender: str  # the From header, e.g. "MBC Digest <digest@example.org>"
    list_id: str  # the List-Id header, e.g. "MBC Digest: this week <weekly.digest.example.org>"


@dataclass(frozen=True, kw_only=True)
class RenderedVariant:
    key: str
    subject: str
    html: str  # with placeholders
    text: str  # with placeholders
    placeholders: tuple[str, ...] = ()  # the tokens each recipient must supply, e.g. ("-unsubscribe_url-",)


class Recipient(NamedTuple):  # a digest builds one per recipient: a tuple is built four times faster than a dataclass
    subscriber_id: int
    email: str
    message_id: str  # with angle brackets: "<…@example.org>"
    substitutions: Mapping[str, str] = MappingProxyType({})
    headers: Mapping[str, str] = MappingProxyType({})  # List-Unsubscribe, List-Unsubscribe-Post


class Outcome(NamedTuple):  # one per recipient, like Recipient
    subscriber_id: int
    state: str  # one of OUTCOME_STATES; "unknown" when the provider may or may not have taken it
    reason: str | None = None
    provider_status: str | None = None


@runtime_checkable
class Backend(Protocol):
    name: str
    max_batch: int  # most recipients per send_batch call

    def send_batch(self, issue: IssueMeta, variant: RenderedVariant,
                   recipients: Sequence[Recipient]) -> list[Outcome]:
        """Send ``variant`` to each recipient; one Outcome per recipient, in any order.

        Raise only for a failure of the whole batch: ``DeliveryHalted`` (the relay stayed away, or a setting is
        wrong) stops the send, and every recipient not in its ``outcomes`` waits for a later run; ``DeliveryUnknown``
        records the batch as unknown; any other DeliveryError as failed.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class PreparesBatches(Protocol):
    """A backend that can encode a batch's requests ahead of sending them, here or in a worker process."""

    def prepare_batch(self, issue: IssueMeta, variant: RenderedVariant, recipients: Sequence[Recipient],
                      batch_id: str) -> object:
        """The requests for ``recipients``, ready for ``send_prepared``; nothing sent."""
        ...

    def send_prepared(self, prepared: object) -> list[Outcome]:
        """Send what ``prepare_batch`` (or its ``batch_preparer``) made; the same contract as ``send_batch``."""
        ...

    def batch_preparer(self) -> Callable[[IssueMeta, RenderedVariant, Sequence[Recipient], str], object]:
        """What ``prepare_batch`` does, as a picklable object without the connection to the provider."""
        ...


@runtime_checkable
class SendsMessages(Protocol):
    """A backend that can send one whole transactional message (confirmation, welcome)."""

    def send_message(self, msg: EmailMessage) -> None: ...
