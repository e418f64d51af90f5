"""The file backend: one .eml per message in the outbox, named after its Message-ID.

A re-send of the same message overwrites its file rather than adding a second one, and each file is written
atomically, so a reader (or a test) never sees half a message.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.atomic_files import write_atomic
from pipeline.delivery.backend import IssueMeta, Outcome, Recipient, RenderedVariant
from pipeline.delivery.memory import TemplateCache
from pipeline.errors import DeliveryError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# A temporary file write_atomic makes is renamed within milliseconds; one this old was left by a crash.
STALE_TMP_S = 600


def sweep_stale_tmp(outbox: Path, *, older_than: float = STALE_TMP_S, now: float | None = None) -> int:
    """Remove temporary files a crash left in the outbox (write_atomic's ``.<name>.*.tmp``). Returns how many."""
    now = time.time() if now is None else now
    removed = 0
    try:
        candidates = list(Path(outbox).glob(".*.tmp"))
    except OSError:
        return 0
    for path in candidates:
        try:
            if now - path.stat().st_mtime > older_than:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            pass  # another process swept it first
        except OSError:
            pass
    return removed


def eml_name(message_id: str) -> str:
    """File name for a Message-ID: its local part, made safe for any file system."""
    local = message_id.strip().strip("<>").rsplit("@", 1)[0]
    name = _UNSAFE.sub("_", local).lstrip(".")[:200]
    if not name:
        raise ValueError(f"cannot name a file after Message-ID {message_id!r}")
    return name + ".eml"


class FileBackend:
    name = "file"
    max_batch = 1000

    def __init__(self, outbox: Path):
        self.outbox = Path(outbox)
        self._cache = TemplateCache()
        sweep_stale_tmp(self.outbox)

    def path_for(self, recipient: Recipient) -> Path:
        return self.outbox / eml_name(recipient.message_id)

    def send_batch(self, issue: IssueMeta, variant: RenderedVariant,
                   recipients: Sequence[Recipient]) -> list[Outcome]:
        template = self._cache.get(issue, variant)
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"PIPELINE_OUTBOX: cannot create {self.outbox} ({exc.strerror}); check the path") from None
        outcomes = []
        for r in recipients:
            try:
                write_atomic(self.path_for(r), template.render(r))
            except OSError as exc:
                outcomes.append(Outcome(subscriber_id=r.subscriber_id, state="failed", reason=f"outbox: {exc.strerror}"))
            else:
                outcomes.append(Outcome(subscriber_id=r.subscriber_id, state="sent"))
        return outcomes

    def send_message(self, msg) -> None:
        """One transactional EmailMessage (confirmation, welcome), as its own ``.eml``."""
        if not msg["Message-ID"]:
            raise DeliveryError("a transactional message needs a Message-ID header")
        self.outbox.mkdir(parents=True, exist_ok=True)
        write_atomic(self.outbox / eml_name(msg["Message-ID"]), msg.as_bytes(), skip_unchanged=False)

    def close(self) -> None:
        pass
