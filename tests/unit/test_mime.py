from __future__ import annotations

from datetime import datetime
from email import policy
from email.parser import BytesParser
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.delivery.backend import IssueMeta, Recipient, RenderedVariant
from pipeline.delivery.mime import MessageTemplate

PH = ("-unsubscribe_url-", "-preferences_url-")
ISSUE = IssueMeta(digest="weekly", issue_id=1, fire_at=datetime(2026, 11, 23, 8, tzinfo=ZoneInfo("America/New_York")),
                  sender="MBC Digest <digest@example.org>", list_id='"MBC Digest: this week" <weekly.digest.example.org>')
text_pieces = st.lists(st.one_of(st.sampled_from(PH), st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)),
                       max_size=12).map("".join)
urls = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=200)


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def norm(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=150, deadline=None)
@given(html=text_pieces, text=text_pieces, unsub=urls, prefs=urls)
def test_substituted_bytes_decode_to_the_substituted_text(html, text, unsub, prefs):
    variant = RenderedVariant(key="k", subject="MBC Digest: this week — 23 November 2026", html=html, text=text,
                              placeholders=PH)
    recipient = Recipient(subscriber_id=7, email="ann@example.org", message_id="<x.s7@example.org>",
                          substitutions={PH[0]: unsub, PH[1]: prefs},
                          headers={"List-Unsubscribe": "<https://digest.example.org/u/abc>",
                                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    data = MessageTemplate(ISSUE, variant).render(recipient)
    assert all(len(line) <= 78 for line in data.split(b"\r\n")[20:])  # body lines: quoted-printable's 76 + slack
    msg = parse(data)
    assert not msg.defects
    assert msg.get_content_type() == "multipart/alternative"

    def expect(s: str) -> str:
        return norm(s).replace(PH[0], unsub).replace(PH[1], prefs)

    assert norm(msg.get_body(("plain",)).get_content()) == expect(text)
    assert norm(msg.get_body(("html",)).get_content()) == expect(html)
    assert msg["Subject"] == variant.subject
    assert msg["To"] == "ann@example.org"


def _to_line(data: bytes) -> bytes:
    return next(line for line in data.split(b"\r\n") if line.startswith(b"To: "))


def test_a_non_ascii_local_part_goes_as_utf8_never_as_an_encoded_word():
    variant = RenderedVariant(key="k", subject="s", html="<p>x</p>", text="x")
    r = Recipient(subscriber_id=1, email="josé@example.com", message_id="<m@example.org>")
    data = MessageTemplate(ISSUE, variant).render(r)
    assert _to_line(data) == "To: josé@example.com".encode()
    assert b"=?" not in _to_line(data)
    # RFC 6532: the headers are UTF-8, so read them as UTF-8.
    msg = BytesParser(policy=policy.default).parsebytes(data.decode("utf-8").encode("utf-8"))
    assert not msg.defects
    from email import message_from_string
    assert message_from_string(data.decode("utf-8"), policy=policy.default)["To"].addresses[0].username == "josé"


def test_an_internationalised_domain_goes_as_idna():
    variant = RenderedVariant(key="k", subject="s", html="<p>x</p>", text="x")
    r = Recipient(subscriber_id=1, email="user@bücher.example", message_id="<m@example.org>")
    assert _to_line(MessageTemplate(ISSUE, variant).render(r)) == b"To: user@xn--bcher-kva.example"


@given(local=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=20)
       .filter(lambda s: not any(c in s for c in '@<>,"\\')),
       domain=st.sampled_from(["example.org", "bücher.example", "exämple.org", "例え.example"]))
def test_no_address_ever_becomes_an_encoded_word(local, domain):
    from pipeline.delivery.mime import AddressError, wire_address

    try:
        wire = wire_address(f"{local}@{domain}")
    except AddressError:
        return
    assert "=?" not in wire.rpartition("@")[2] and wire.rpartition("@")[2].isascii()
    variant = RenderedVariant(key="k", subject="s", html="<p>x</p>", text="x")
    data = MessageTemplate(ISSUE, variant).render(Recipient(subscriber_id=1, email=f"{local}@{domain}",
                                                            message_id="<m@example.org>"))
    assert _to_line(data) == ("To: " + wire).encode("utf-8")
