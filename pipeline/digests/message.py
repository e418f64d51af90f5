"""What makes each digest email personal: its Message-ID, links and headers. The bytes come from delivery.mime.

Everything here is a function of the issue (digest, fire time), the subscriber and the secret key, so a re-run
builds byte-identical messages: the same Message-ID, the same links.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from pipeline.delivery.backend import IssueMeta, Recipient
from pipeline.digests.render import PREFERENCES, UNSUBSCRIBE, substitutions_for
from pipeline.errors import ConfigError
from pipeline.schedules import Digest
from pipeline.settings import Settings
from pipeline.subscribers.tokens import Signer, keyed_mac

ONE_CLICK = "List-Unsubscribe=One-Click"
_PURPOSES = ("unsubscribe", "preferences")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_URL_UNSAFE = re.compile(r"[\s\"'<>&\\]")


def list_id(digest: Digest, settings: Settings) -> str:
    """RFC 2919: a readable phrase and a stable label, e.g. ``"MBC Digest: this week" <weekly.digest.example.org>``."""
    label = _LABEL_UNSAFE.sub("-", digest.name).strip("-").lower() or "digest"
    phrase = digest.title.replace("\\", "").replace('"', "")
    return f'"{phrase}" <{label}.digest.{settings.sender_domain}>'


def issue_meta(digest: Digest, fire_at: datetime, settings: Settings, issue_id: int | None = None) -> IssueMeta:
    return IssueMeta(digest=digest.name, issue_id=issue_id, fire_at=fire_at, sender=settings.sender,
                     list_id=list_id(digest, settings))


class RecipientBuilder:
    """Builds each recipient's Message-ID, links and headers for one issue."""

    def __init__(self, settings: Settings, digest: Digest, fire_at: datetime, *, signer: Signer | None = None):
        if not settings.secret_key:
            raise ConfigError("PIPELINE_SECRET_KEY: required to sign the links in a digest")
        self.site = settings.site_url.rstrip("/")
        if _URL_UNSAFE.search(self.site):
            raise ConfigError(f"PIPELINE_SITE_URL: {settings.site_url!r} contains characters that cannot go in an email link")
        self.signer = signer or Signer(settings.secret_key)
        self.fire_at = fire_at
        self.domain = settings.sender_domain
        self._mac = keyed_mac(hashlib.sha256(b"message-id\0" + settings.secret_key.encode("utf-8")).digest(),
                              hashlib.sha256)
        label = _LABEL_UNSAFE.sub("-", digest.name).strip("-").lower() or "digest"
        self._prefix = f"digest-{label}-{fire_at.astimezone(UTC):%Y%m%dT%H%MZ}"
        self._timestamp = int(fire_at.timestamp())
        self._sign = self.signer.sign_at_many

    def message_id(self, subscriber_id: int) -> str:
        mac = self._mac.copy()
        mac.update(f"{self._prefix}.s{subscriber_id}".encode())
        return f"<{self._prefix}.s{subscriber_id}.{mac.hexdigest()[:8]}@{self.domain}>"

    def build(self, subscriber_id: int, email: str, token_version: int = 0) -> Recipient:
        return self.assemble(subscriber_id, email, *self.personal(subscriber_id, token_version))

    def personal(self, subscriber_id: int, token_version: int = 0) -> tuple[str, str, str]:
        """What differs between recipients besides the address: (Message-ID, unsubscribe token, preferences token).
        Tokens carry the fire time as their issue time: the same links on every run of this issue."""
        unsubscribe, preferences = self._sign(_PURPOSES, subscriber_id, token_version, self._timestamp)
        return self.message_id(subscriber_id), unsubscribe, preferences

    def assemble(self, subscriber_id: int, email: str, message_id: str, unsubscribe: str, preferences: str) -> Recipient:
        """A recipient from its parts (``personal``); with markers for parts, the shape of every recipient."""
        site = self.site
        return Recipient(
            subscriber_id, email, message_id,
            {UNSUBSCRIBE: f"{site}/unsubscribe/{unsubscribe}", PREFERENCES: f"{site}/preferences/{preferences}"},
            {"List-Unsubscribe": f"<{site}/u/{unsubscribe}>", "List-Unsubscribe-Post": ONE_CLICK},
        )


def example_substitutions(settings: Settings) -> dict[str, str]:
    """Links for previews and web copies, where there is no recipient."""
    site = settings.site_url.rstrip("/")
    return substitutions_for(unsubscribe_url=f"{site}/subscribe", preferences_url=f"{site}/subscribe")

