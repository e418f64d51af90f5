"""Transactional email (confirmation, welcome): one message at a time, outside the digest ledger."""

from __future__ import annotations

import logging
from email.message import EmailMessage

from pipeline.delivery.factory import send_transactional
from pipeline.settings import Settings

log = logging.getLogger("pipeline.delivery")


def send_message(settings: Settings, msg: EmailMessage) -> None:
    """Send one transactional message through the configured backend (file, SMTP or SendGrid)."""
    send_transactional(settings, msg)
    log.info("transactional message sent", extra={"action": "transactional_sent", "kind": msg["X-Pipeline-Kind"] or ""})
