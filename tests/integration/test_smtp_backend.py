from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest

from pipeline.delivery.smtp import SmtpBackend, parse_smtp_url
from pipeline.errors import ConfigError, DeliverySetupError, RelayUnavailable
from tests.support import smtp_server
from tests.support.factories import issue, recipient, variant


@pytest.fixture
def handler(tmp_path):
    return smtp_server.SavingHandler(tmp_path / "mail", refuse=frozenset({"reader3@example.org"}))


@pytest.fixture
def plain(handler):
    controller = smtp_server.start(handler)
    yield controller
    controller.stop()


def test_url_forms():
    t = parse_smtp_url("smtp://me%40example.org:p%2Fw@mail.example.org:587?starttls=1")
    assert (t.host, t.port, t.starttls, t.implicit_tls, t.username, t.password) == \
        ("mail.example.org", 587, True, False, "me@example.org", "p/w")
    assert parse_smtp_url("smtps://mail.example.org").port == 465
    assert "p/w" not in repr(t)
    with pytest.raises(ConfigError):
        parse_smtp_url("http://mail.example.org")


def test_many_messages_over_one_connection_with_refusal_on_its_own(plain, handler, tmp_path):
    b = SmtpBackend(f"smtp://127.0.0.1:{plain.port}")
    outcomes = {o.subscriber_id: o for o in b.send_batch(issue(), variant(), [recipient(i) for i in range(1, 11)])}
    b.close()
    assert outcomes[3].state == "failed" and "550" in outcomes[3].reason and "@" not in outcomes[3].reason
    assert sorted(i for i, o in outcomes.items() if o.state == "sent") == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert b.connections == 1 and handler.sessions == 1
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 9
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["To"] == "reader1@example.org"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == "<digest-weekly.s1@example.org>"
    text = msg.get_body(("plain",)).get_content()
    assert "https://digest.example.org/unsubscribe/tok1" in text and "Café" in text


def test_reconnects_when_the_server_drops_the_connection(plain, handler):
    handler.drop_on_mail.update({3, 6})
    b = SmtpBackend(f"smtp://127.0.0.1:{plain.port}")
    outcomes = b.send_batch(issue(), variant(), [recipient(i) for i in (1, 2, 4, 5, 6)])
    b.close()
    assert [o.state for o in outcomes] == ["sent"] * 5
    assert b.connections == 3
    assert sorted(rcpts[0] for rcpts, _ in handler.saved) == sorted(f"reader{i}@example.org" for i in (1, 2, 4, 5, 6))


def test_throttles_to_the_configured_rate(plain):
    slept: list[float] = []
    t = [0.0]

    def sleep(s):
        slept.append(s)
        t[0] += s

    b = SmtpBackend(f"smtp://127.0.0.1:{plain.port}", rate=10, sleep=sleep, clock=lambda: t[0])
    b.send_batch(issue(), variant(), [recipient(i) for i in (1, 2, 4, 5, 6)])
    b.close()
    assert t[0] == pytest.approx(0.4)  # five messages at 10/s: four waits of 0.1 s


def test_starttls_with_login(handler, tmp_path):
    server_ctx, client_ctx = smtp_server.self_signed(tmp_path)
    controller = smtp_server.start(handler, tls_context=server_ctx, require_starttls=True,
                                   authenticator=smtp_server.authenticator("me", "secret"), auth_required=True)
    try:
        b = SmtpBackend(f"smtp://me:secret@127.0.0.1:{controller.port}?starttls=1", ssl_context=client_ctx)
        assert [o.state for o in b.send_batch(issue(), variant(), [recipient(1)])] == ["sent"]
        b.close()
    finally:
        controller.stop()
    assert len(handler.saved) == 1


def test_smtps(handler, tmp_path):
    server_ctx, client_ctx = smtp_server.self_signed(tmp_path)
    controller = smtp_server.start(handler, ssl_context=server_ctx)
    try:
        b = SmtpBackend(f"smtps://127.0.0.1:{controller.port}", ssl_context=client_ctx)
        assert [o.state for o in b.send_batch(issue(), variant(), [recipient(1)])] == ["sent"]
        b.close()
    finally:
        controller.stop()


def test_an_unreachable_relay_is_waited_for_then_leaves_the_batch_waiting():
    port = smtp_server.free_port()
    b = SmtpBackend(f"smtp://127.0.0.1:{port}", timeout=2, patience=1.0)
    with pytest.raises(RelayUnavailable, match=f"the relay at 127.0.0.1:{port} has not answered for 1 second") as info:
        b.send_batch(issue(), variant(), [recipient(1)])
    assert info.value.outcomes == () and "ConnectionRefusedError" in str(info.value)


def test_transactional_message(plain, handler):
    msg = EmailMessage()
    msg["From"] = "MBC Digest <digest@example.org>"
    msg["To"] = "ann@example.net"
    msg["Subject"] = "Please confirm"
    msg["Message-ID"] = "<confirm.1@example.org>"
    msg.set_content("Confirm: https://digest.example.org/confirm/x")
    b = SmtpBackend(f"smtp://127.0.0.1:{plain.port}")
    b.send_message(msg)
    b.close()
    assert handler.saved[0][0] == ["ann@example.net"]


def test_a_refused_recipient_fails_with_the_servers_words_and_no_address(plain, handler):
    handler.refusal = "550 5.1.1 <reader3@example.org>: Recipient address rejected: User unknown"
    b = SmtpBackend(f"smtp://127.0.0.1:{plain.port}")
    outcomes = {o.subscriber_id: o for o in b.send_batch(issue(), variant(), [recipient(i) for i in (2, 3, 4)])}
    b.close()
    assert (outcomes[3].state, outcomes[3].reason, outcomes[3].provider_status) == (
        "failed", "550 5.1.1 <address>: Recipient address rejected: User unknown", "550")
    assert [outcomes[i].state for i in (2, 4)] == ["sent", "sent"]


def test_a_relay_that_will_not_relay_is_a_setting_to_fix_not_a_recipients_failure(plain, handler):
    handler.refuse = frozenset({"reader1@example.org", "reader2@example.org"})
    handler.refusal = "554 5.7.1 <reader1@example.org>: Relay access denied"
    b = SmtpBackend(f"smtp://127.0.0.1:{plain.port}")
    with pytest.raises(DeliverySetupError, match="PIPELINE_SMTP_URL: the relay at .* will not relay for us") as info:
        b.send_batch(issue(), variant(), [recipient(i) for i in (1, 2)])
    b.close()
    assert info.value.outcomes == () and "@" not in str(info.value)


def test_a_4xx_answer_is_retried_within_the_patience(plain, handler):
    handler.refuse = frozenset({"reader2@example.org"})
    handler.refusal = "451 4.3.0 try again later"
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        if len(slept) == 2:
            handler.refuse = frozenset()  # the relay recovers
    b = SmtpBackend(f"smtp://127.0.0.1:{plain.port}", sleep=sleep)
    outcomes = b.send_batch(issue(), variant(), [recipient(i) for i in (1, 2, 4)])
    b.close()
    assert [o.state for o in outcomes] == ["sent"] * 3 and slept == [0.5, 1.0]
    assert sorted(rcpts[0] for rcpts, _ in handler.saved) == [f"reader{i}@example.org" for i in (1, 2, 4)]
def _international(handler, port):
    b = SmtpBackend(f"smtp://127.0.0.1:{port}")
    people = [recipient(1)._replace(email="josé@example.com"), recipient(2)._replace(email="user@bücher.example"),
              recipient(4)]
    try:
        return {o.subscriber_id: o for o in b.send_batch(issue(), variant(), people)}
    finally:
        b.close()


def test_smtputf8_and_idna_when_the_relay_offers_smtputf8(tmp_path):
    handler = smtp_server.SavingHandler(tmp_path / "mail")
    controller = smtp_server.start(handler, enable_SMTPUTF8=True)
    try:
        outcomes = _international(handler, controller.port)
    finally:
        controller.stop()
    assert {i: o.state for i, o in outcomes.items()} == {1: "sent", 2: "sent", 4: "sent"}
    envelopes = {tuple(rcpts): data for rcpts, data in handler.saved}
    assert set(envelopes) == {("josé@example.com",), ("user@xn--bcher-kva.example",), ("reader4@example.org",)}
    to_lines = {rcpts: next(line for line in data.split(b"\r\n") if line.startswith(b"To: "))
                for rcpts, data in envelopes.items()}
    assert to_lines[("josé@example.com",)] == "To: josé@example.com".encode()
    assert to_lines[("user@xn--bcher-kva.example",)] == b"To: user@xn--bcher-kva.example"
    assert not [line for line in to_lines.values() if b"=?" in line]


def test_a_relay_without_smtputf8_gets_idna_and_a_clear_refusal_for_a_non_ascii_local_part(tmp_path):
    handler = smtp_server.SavingHandler(tmp_path / "mail")
    controller = smtp_server.start(handler, enable_SMTPUTF8=False)
    try:
        outcomes = _international(handler, controller.port)
    finally:
        controller.stop()
    assert outcomes[1].state == "failed" and "does not offer SMTPUTF8" in outcomes[1].reason
    assert "josé" not in outcomes[1].reason
    assert outcomes[2].state == "sent" and outcomes[4].state == "sent"
    assert sorted(tuple(r) for r, _ in handler.saved) == [("reader4@example.org",), ("user@xn--bcher-kva.example",)]
