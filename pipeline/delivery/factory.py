"""Pick the delivery backend named by PIPELINE_DELIVERY."""

from __future__ import annotations

from pipeline.delivery.backend import Backend, SendsMessages
from pipeline.errors import ConfigError
from pipeline.settings import Settings


def make_backend(settings: Settings, *, patience: float | None = None) -> Backend:
    """``patience``: how long to wait for a relay or API that does not answer (default PIPELINE_RELAY_PATIENCE)."""
    patience = settings.relay_patience if patience is None else patience
    if settings.delivery == "file":
        from pipeline.delivery.file import FileBackend

        return FileBackend(settings.outbox)
    if settings.delivery == "memory":
        from pipeline.delivery.memory import MemoryBackend

        return MemoryBackend()
    if settings.delivery == "sendgrid":
        from pipeline.delivery.sendgrid import SendGridBackend

        return SendGridBackend(settings.sendgrid_api_key, host=settings.sendgrid_host,
                               tracking=settings.sendgrid_tracking, patience=patience)
    if settings.delivery == "smtp":
        from pipeline.delivery.smtp import SmtpBackend

        return SmtpBackend(settings.smtp_url, rate=settings.smtp_rate, patience=patience,
                           ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)
    raise ConfigError(f"PIPELINE_DELIVERY: unknown backend {settings.delivery!r}; use one of: file, smtp, sendgrid")


def address_problem(settings: Settings, email: str) -> str | None:
    """Why the configured backend can never send to ``email``, or None. SendGrid's Mail Send takes ASCII addresses
    only (its spec types them ``format: email``); SMTP (with SMTPUTF8) and the outbox folder take any."""
    if settings.delivery == "sendgrid" and not email.isascii():
        return ("PIPELINE_DELIVERY=sendgrid cannot send to it: SendGrid takes ASCII addresses only "
                "(an SMTP relay that supports SMTPUTF8 can)")
    return None


def send_transactional(settings: Settings, msg) -> None:
    """One transactional EmailMessage through the configured backend's ``send_message``. A relay that does not
    answer fails it at once (someone may be waiting on a page for it)."""
    backend = make_backend(settings, patience=0)
    if not isinstance(backend, SendsMessages):
        from pipeline.errors import DeliveryError

        raise DeliveryError(f"PIPELINE_DELIVERY={settings.delivery}: this backend cannot send transactional mail")
    try:
        backend.send_message(msg)
    finally:
        backend.close()
