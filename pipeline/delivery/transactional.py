"""Transactional email (confirmation, welcome): one message at a time, outside the digest ledger, for the outbox sender."""

from __future__ import annotations

import logging
from email.message import EmailMessage

from pipeline import metrics
from pipeline.delivery.factory import send_transactional
from pipeline.errors import DeliveryHalted, DeliveryUnknown
from pipeline.settings import Settings

log = logging.getLogger("pipeline.delivery")


def send_message(settings: Settings, msg: EmailMessage) -> None:
    """Send one transactional message through the configured backend (file, SMTP or SendGrid)."""
    kind = msg["X-Pipeline-Kind"] or "other"
    try:
        send_transactional(settings, msg)
    except DeliveryUnknown:
        metrics.messages(settings.delivery, kind, {"unknown": 1})
        raise
    except DeliveryHalted:
        # The relay's or a setting's trouble, not the message's: the outbox keeps it for a later try.
        metrics.messages(settings.delivery, kind, {"deferred": 1})
        raise
    except Exception:
        metrics.messages(settings.delivery, kind, {"failed": 1})
        raise
    metrics.messages(settings.delivery, kind, {"sent": 1})
    log.info("transactional message sent", extra={"action": "transactional_sent", "kind": msg["X-Pipeline-Kind"] or ""})
