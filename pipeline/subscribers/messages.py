"""Transactional emails about a subscription (confirmation, welcome), rendered from templates/email/."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from pipeline.content.model import Library
from pipeline.delivery.mime import needs_smtputf8, wire_address
from pipeline.settings import Settings
from pipeline.subscribers.model import Subscriber


@lru_cache(maxsize=8)
def email_env(templates_dir: Path) -> Environment:
    return Environment(loader=FileSystemLoader(str(templates_dir)), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html", "html.j2"], default_for_string=False),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _message(settings: Settings, *, to: str, subject: str, kind: str, template: str, at: datetime,
             values: dict) -> EmailMessage:
    env = email_env(Path(settings.templates_dir).resolve())
    values = {"site_url": settings.site_url.rstrip("/"), "postal_address": settings.postal_address, **values}
    # The domain as IDNA; a local part beyond ASCII goes as UTF-8 (RFC 6532), never as an encoded word.
    msg = EmailMessage(policy=default.clone(utf8=True) if needs_smtputf8(to) else default)
    msg["From"] = settings.sender
    msg["To"] = wire_address(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(idstring=kind, domain=settings.sender_domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Pipeline-Kind"] = kind
    msg.set_content(env.get_template(f"email/{template}.txt.j2").render(**values))
    msg.add_alternative(env.get_template(f"email/{template}.html.j2").render(**values), subtype="html")
    return msg


def confirmation(settings: Settings, sub: Subscriber, *, confirm_url: str, at: datetime) -> EmailMessage:
    return _message(settings, to=sub.email, subject="Please confirm your MBC Digest subscription", kind="confirm",
                    template="confirm", at=at, values={"confirm_url": confirm_url})


def welcome(settings: Settings, sub: Subscriber, *, library: Library, preferences_url: str, unsubscribe_url: str,
            archive_url: str, at: datetime) -> EmailMessage:
    chosen = sub.topics or library.default_topic_ids
    titles = [t.title for t in library.topics if t.id in chosen]
    return _message(settings, to=sub.email, subject="Welcome to MBC Digest", kind="welcome", template="welcome",
                    at=at, values={"name": sub.name, "cadence": sub.cadence, "topics": titles,
                                   "preferences_url": preferences_url, "unsubscribe_url": unsubscribe_url,
                                   "archive_url": archive_url})


def already_subscribed(settings: Settings, sub: Subscriber, *, preferences_url: str, at: datetime) -> EmailMessage:
    return _message(settings, to=sub.email, subject="You're already subscribed to MBC Digest", kind="already",
                    template="already", at=at, values={"name": sub.name, "preferences_url": preferences_url})


def stop_all(settings: Settings, sub: Subscriber, *, stop_url: str, at: datetime) -> EmailMessage:
    """The one email a "someone has died" report causes: a single button that stops all mail. Nothing in it comes
    from the person who made the report."""
    return _message(settings, to=sub.email, subject="About email from MBC Digest to this address", kind="stop",
                    template="stop_all", at=at, values={"stop_url": stop_url})
