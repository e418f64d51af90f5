from __future__ import annotations

import logging
import time
from email.message import EmailMessage

import pytest

from pipeline.delivery.sendgrid import SendGridBackend
from pipeline.errors import DeliveryError, DeliveryUnknown
from tests.support.factories import issue, recipient, variant
from tests.support.sendgrid_sink import Sink, SinkServer, validate

KEY = "SG.test-key-never-logged"


@pytest.fixture
def server():
    with SinkServer() as s:
        yield s


def backend(server, **kw) -> tuple[SendGridBackend, list[float]]:
    slept: list[float] = []
    kw.setdefault("sleep", slept.append)
    return SendGridBackend(KEY, host=server.url, timeout=5, rng=lambda: 0.5, **kw), slept


def test_one_request_per_thousand_recipients_all_valid(server):
    b, _ = backend(server)
    people = [recipient(i) for i in range(1, 2501)]
    outcomes = []
    for start in range(0, len(people), b.max_batch):
        outcomes += b.send_batch(issue(), variant(), people[start:start + b.max_batch])
    assert server.sink.problems == []
    assert [len(body["personalizations"]) for body in server.sink.bodies] == [1000, 1000, 500]
    assert {o.state for o in outcomes} == {"sent"} and len(outcomes) == 2500
    assert set(server.sink.auth) == {f"Bearer {KEY}"}


def test_request_carries_links_headers_tags_and_no_tracking(server):
    b, _ = backend(server)
    b.send_batch(issue(issue_id=42), variant(), [recipient(5)])
    body = server.sink.bodies[0]
    p = body["personalizations"][0]
    assert p["to"] == [{"email": "reader5@example.org"}]
    assert p["substitutions"]["-unsubscribe_url-"] == "https://digest.example.org/unsubscribe/tok5"
    assert p["headers"]["List-Unsubscribe"] == "<https://digest.example.org/u/tok5>"
    assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert p["headers"]["Message-ID"] == "<digest-weekly.s5@example.org>"
    assert p["custom_args"]["mbc_issue"] == "42" and p["custom_args"]["mbc_rid"] == "5"
    assert all(isinstance(v, str) and "@" not in v for v in p["custom_args"].values())
    assert body["categories"] == ["weekly"]
    assert body["from"] == {"email": "digest@example.org", "name": "MBC Digest"}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "-unsubscribe_url-" in body["content"][1]["value"] and "Café" in body["content"][1]["value"]
    ts = body["tracking_settings"]
    assert not any(v["enable"] for v in ts.values())


def test_tracking_only_when_the_operator_turns_it_on(server):
    b, _ = backend(server, tracking=True)
    b.send_batch(issue(), variant(), [recipient(1)])
    ts = server.sink.bodies[0]["tracking_settings"]
    assert ts["open_tracking"]["enable"] and ts["click_tracking"]["enable"]
    assert not ts["subscription_tracking"]["enable"]


def test_oversized_substitutions_fail_that_recipient_only(server):
    b, _ = backend(server)
    outcomes = {o.subscriber_id: o for o in b.send_batch(issue(), variant(), [recipient(1), recipient(2, big=10_000)])}
    assert outcomes[1].state == "sent" and outcomes[2].state == "failed"
    assert "10000 bytes" in outcomes[2].reason
    assert len(server.sink.bodies[0]["personalizations"]) == 1


def test_429_is_retried_after_the_time_the_server_asks(server):
    # Whole seconds: 4 ahead is at least 3 s away however far into the current second we are.
    server.sink.cue(429, {"X-RateLimit-Reset": str(int(time.time()) + 4)})
    server.sink.cue(429, {"Retry-After": "2"})
    b, slept = backend(server)
    outcomes = b.send_batch(issue(), variant(), [recipient(1)])
    assert [o.state for o in outcomes] == ["sent"]
    assert server.sink.requests == 3 and len(server.sink.bodies) == 1
    assert slept[0] >= 2 and slept[1] >= 2


def test_5xx_is_retried_with_growing_backoff(server):
    server.sink.cue(500, times=2)
    server.sink.cue(503)
    b, slept = backend(server, backoff=0.1)
    assert [o.state for o in b.send_batch(issue(), variant(), [recipient(1)])] == ["sent"]
    assert slept == sorted(slept) and len(slept) == 3 and slept[0] < slept[2]


def test_persistent_5xx_gives_up_after_max_retries(server):
    server.sink.cue(500, times=10)
    b, _ = backend(server, max_retries=3)
    with pytest.raises(DeliveryError) as info:
        b.send_batch(issue(), variant(), [recipient(1)])
    assert not isinstance(info.value, DeliveryUnknown)
    assert server.sink.requests == 4


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_client_errors_are_not_retried(server, status):
    server.sink.cue(status)
    b, slept = backend(server)
    with pytest.raises(DeliveryError) as info:
        b.send_batch(issue(), variant(), [recipient(1)])
    assert server.sink.requests == 1 and slept == []
    assert KEY not in str(info.value)


def test_a_refused_key_stops_further_requests(server):
    server.sink.cue(401)
    b, _ = backend(server)
    for _ in range(3):
        with pytest.raises(DeliveryError, match="SENDGRID_API_KEY"):
            b.send_batch(issue(), variant(), [recipient(1)])
    assert server.sink.requests == 1


def test_a_timeout_is_an_unknown_outcome_not_a_failure(server):
    server.sink.cue(202, delay=1.5)
    b = SendGridBackend(KEY, host=server.url, timeout=0.3, sleep=lambda _s: None)
    with pytest.raises(DeliveryUnknown):
        b.send_batch(issue(), variant(), [recipient(1)])
    assert server.sink.requests == 1


def test_unreachable_host_is_a_clear_error():
    b = SendGridBackend(KEY, host="http://127.0.0.1:9", timeout=1, max_retries=1, sleep=lambda _s: None)
    with pytest.raises(DeliveryError, match="PIPELINE_SENDGRID_HOST"):
        b.send_batch(issue(), variant(), [recipient(1)])


def test_api_key_and_addresses_never_reach_the_log(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.sink.cue(429, {"Retry-After": "0"})
    b, _ = backend(server)
    b.send_batch(issue(), variant(), [recipient(1)])
    assert KEY not in caplog.text and "@example.org" not in caplog.text
    assert KEY not in repr(b)


def test_transactional_message(server):
    msg = EmailMessage()
    msg["From"] = "MBC Digest <digest@example.org>"
    msg["To"] = "ann@example.net"
    msg["Subject"] = "Please confirm"
    msg["Message-ID"] = "<confirm.1@example.org>"
    msg.set_content("Confirm here: https://digest.example.org/confirm/x")
    msg.add_alternative("<p>Confirm</p>", subtype="html")
    b, _ = backend(server)
    b.send_message(msg)
    body = server.sink.bodies[0]
    assert server.sink.problems == []
    assert body["personalizations"][0]["to"] == [{"email": "ann@example.net"}]
    assert body["personalizations"][0]["headers"]["Message-ID"] == "<confirm.1@example.org>"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]


def test_the_sink_itself_rejects_what_sendgrid_would():
    good = {"personalizations": [{"to": [{"email": "a@example.org"}]}], "from": {"email": "d@example.org"},
            "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}
    assert validate(good) == []
    bad = dict(good, personalizations=[{"to": [{"email": "a@example.org"}], "headers": {"Reply-To": "x"},
                                        "custom_args": {"who": "a@example.org", "n": 1},
                                        "substitutions": {"-x-": "y" * 10_001}}] * 1001,
               subject="", content=[])
    problems = " ".join(validate(bad))
    for needle in ("1001 > 1000", "forbidden header Reply-To", "custom_args", "10000 bytes", "no subject", "content"):
        assert needle in problems


def test_sink_counts_copies_per_recipient():
    with SinkServer(Sink(keep=False)) as s:
        b = SendGridBackend(KEY, host=s.url, timeout=5)
        b.send_batch(issue(), variant(), [recipient(1), recipient(2)])
        b.send_batch(issue(), variant(), [recipient(2)])
    assert s.sink.per_recipient[("7", "2")] == 2 and s.sink.recipients == 3
