"""The SendGrid request body is written as text for speed: it must be exactly the JSON of the plain dicts."""

from __future__ import annotations

import json

from pipeline.delivery.backend import Recipient
from pipeline.delivery.sendgrid import BatchEncoder
from tests.support.factories import issue, recipient, variant


def test_encoded_personalizations_are_the_json_of_the_dicts():
    odd = [
        Recipient(subscriber_id=90, email='"quoted\\local"@example.org', message_id="<m90@example.org>",
                  substitutions={"-unsubscribe_url-": 'https://digest.example.org/u/"%s"\\n', "-x%-": "zoë ✓ 100%"},
                  headers={"X-Note": "tab\there, line\nbreak", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}),
        Recipient(subscriber_id=91, email="reader91@example.org", message_id="<ignored@example.org>",
                  headers={"Message-ID": "<own91@example.org>", "List-Unsubscribe": "<https://example.org/u/1>"}),
        Recipient(subscriber_id=92, email="reader92@example.org", message_id="<m92@example.org>"),
    ]
    people = [recipient(1), recipient(2), *odd, recipient(3)]
    encoder = BatchEncoder(issue(), variant())
    body, refused = encoder.encode(people, "batch-%d-\"x\"")
    assert refused == []
    parsed = json.loads(body)
    assert parsed["personalizations"] == [encoder.personalization(r, "batch-%d-\"x\"") for r in people]
    assert parsed["personalizations"][3]["headers"]["Message-ID"] == "<own91@example.org>"
    assert parsed["subject"] == variant().subject and parsed["content"][0]["type"] == "text/plain"
