"""An in-memory backend: a real backend for tests, previews and benchmarks. Nothing leaves the process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pipeline.delivery.backend import IssueMeta, Outcome, Recipient, RenderedVariant
from pipeline.delivery.mime import MessageTemplate


class TemplateCache:
    """One MessageTemplate per (issue, variant): encode each variant once per issue."""

    def __init__(self) -> None:
        self._templates: dict[tuple[IssueMeta, RenderedVariant], MessageTemplate] = {}

    def get(self, issue: IssueMeta, variant: RenderedVariant) -> MessageTemplate:
        key = (issue, variant)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = MessageTemplate(issue, variant)
        return template


@dataclass
class MemoryBackend:
    """Keeps what it is given. ``materialise`` builds each message's bytes at send time (as a real backend
    would); ``keep_bytes`` keeps them, which costs memory at scale."""

    materialise: bool = False
    keep_bytes: bool = True
    fail: frozenset[str] = frozenset()  # email addresses to report as failed, for tests
    name: str = "memory"
    max_batch: int = 1000
    sent: list[tuple[IssueMeta, RenderedVariant, Recipient]] = field(default_factory=list)
    raw: dict[str, bytes] = field(default_factory=dict)  # message id -> bytes, when kept
    bytes_total: int = 0
    batches: int = 0
    _cache: TemplateCache = field(default_factory=TemplateCache, repr=False)

    def send_batch(self, issue: IssueMeta, variant: RenderedVariant,
                   recipients: Sequence[Recipient]) -> list[Outcome]:
        self.batches += 1
        template = self._cache.get(issue, variant) if self.materialise else None
        outcomes = []
        for r in recipients:
            if r.email in self.fail:
                outcomes.append(Outcome(subscriber_id=r.subscriber_id, state="failed", reason="refused by test"))
                continue
            self.sent.append((issue, variant, r))
            if template is not None:
                data = template.render(r)
                self.bytes_total += len(data)
                if self.keep_bytes:
                    self.raw[r.message_id] = data
            outcomes.append(Outcome(subscriber_id=r.subscriber_id, state="sent"))
        return outcomes

    def message_bytes(self, index: int) -> bytes:
        issue, variant, recipient = self.sent[index]
        return self._cache.get(issue, variant).render(recipient)

    def messages(self) -> Iterator[bytes]:
        for i in range(len(self.sent)):
            yield self.message_bytes(i)

    def close(self) -> None:
        pass
