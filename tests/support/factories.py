"""Small values for delivery tests: an issue, a variant with placeholders, recipients at example.org."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.delivery.backend import IssueMeta, Recipient, RenderedVariant

FIRE_AT = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def issue(issue_id: int = 7, digest: str = "weekly") -> IssueMeta:
    return IssueMeta(digest=digest, issue_id=issue_id, fire_at=FIRE_AT, sender="MBC Digest <digest@example.org>",
                     list_id='"MBC Digest: this week" <weekly.digest.example.org>')


def variant(key: str = "v1") -> RenderedVariant:
    return RenderedVariant(
        key=key, subject="This week: palliative care, explained",
        html="<p>Hello. Café notes.</p><p><a href=\"-unsubscribe_url-\">Unsubscribe</a> "
             "<a href=\"-preferences_url-\">Preferences</a></p>",
        text="Hello. Café notes.\n\nUnsubscribe: -unsubscribe_url-\nPreferences: -preferences_url-\n",
        placeholders=("-unsubscribe_url-", "-preferences_url-"))


def recipient(sid: int, *, domain: str = "example.org", big: int = 0) -> Recipient:
    return Recipient(
        subscriber_id=sid, email=f"reader{sid}@{domain}", message_id=f"<digest-weekly.s{sid}@example.org>",
        substitutions={"-unsubscribe_url-": f"https://digest.example.org/unsubscribe/tok{sid}" + "x" * big,
                       "-preferences_url-": f"https://digest.example.org/preferences/tok{sid}"},
        headers={"List-Unsubscribe": f"<https://digest.example.org/u/tok{sid}>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
