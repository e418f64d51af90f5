"""The SendGrid request body is written as text for speed: it must be exactly the JSON of the plain dicts."""

from __future__ import annotations

import json

from pipeline.delivery.backend import Recipient
from pipeline.delivery.sendgrid_payload import BatchEncoder
from pipeline.delivery.sendgrid_spec import NON_ASCII_ADDRESS
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


def test_encoding_from_a_prototype_writes_what_encoding_each_recipient_writes():
    marks = ("\0e\0", "\0m\0", "\0u\0")

    def shaped(sid: int, email: str, message_id: str, token: str) -> Recipient:  # the shape, site and all
        return Recipient(
            subscriber_id=sid, email=email, message_id=message_id,
            substitutions={"-unsubscribe_url-": f"https://zoë.example.org/100%/u/{token}?t={token}",
                           "-x%-": "fixed %s ✓"},
            headers={"List-Unsubscribe": f"<https://zoë.example.org/u/{token}>", "X-Fixed": 'say "hi"\\'})

    people = [(1, "reader1@example.org", "<m1@example.org>", "tok1"),
              (2, '"quoted\\local"@example.org', "<m2 %d@example.org>", 'we"ird\\%s'),
              (3, "reader3@example.org", "<m3@example.org>", "x" * 5100),  # twice in the substitutions: refused
              (4, "reader4@example.org", "<m4@example.org>", "ü" * 2600),  # 5,200 characters, but 10,400 bytes
              (5, "reader5@example.org", "<m5@example.org>", "y" * 2000),  # 4 bytes a character would refuse it
              (6, "reader6@example.org", "<m6@example.org>", "\U0001F600" * 1300),  # 1,300 characters, 10,400 bytes
              (7, "zoë@example.org", "<m7@example.org>", "tok7")]  # outside SendGrid's format: email
    encoder = BatchEncoder(issue(), variant())
    expected = encoder.encode([shaped(*p) for p in people], "batch-%d")
    got = encoder.encode_like(shaped(0, *marks), marks, [(sid, rest) for sid, *rest in people], "batch-%d")
    assert got == expected
    assert {o.subscriber_id: o.reason for o in got[1]} == {
        3: "substitutions exceed 10000 bytes", 4: "substitutions exceed 10000 bytes",
        6: "substitutions exceed 10000 bytes", 7: NON_ASCII_ADDRESS}
    assert [p["custom_args"]["mbc_rid"] for p in json.loads(got[0])["personalizations"]] == ["1", "2", "5"]
