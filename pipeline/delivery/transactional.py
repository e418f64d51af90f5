"""Transactional email (confirmation, welcome): one message at a time, outside the digest ledger."""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage

from pipeline.errors import DeliveryError
from pipeline.fsio import write_atomic
from pipeline.settings import Settings

log = logging.getLogger("pipeline.delivery")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def eml_name(msg: EmailMessage) -> str:
    """A file name for the message, derived from its Message-ID."""
    message_id = (msg["Message-ID"] or "").strip().strip("<>")
    if not message_id:
        raise DeliveryError("a transactional message needs a Message-ID header")
    return _UNSAFE.sub("_", message_id)[:200] + ".eml"


def send_message(settings: Settings, msg: EmailMessage) -> None:
    """Send one transactional message through the configured backend: the file outbox writes one ``.eml``
    atomically; SMTP and SendGrid send it through their backends."""
    if settings.delivery != "file":
        from pipeline.delivery.factory import send_transactional

        send_transactional(settings, msg)
        log.info("transactional message sent", extra={"action": "transactional_sent", "kind": msg["X-Pipeline-Kind"] or ""})
        return
    path = settings.outbox / eml_name(msg)
    write_atomic(path, msg.as_bytes(), skip_unchanged=False)
    log.info("transactional message written", extra={"action": "transactional_sent", "kind": msg["X-Pipeline-Kind"] or ""})
