"""RFC 5322 messages for a variant, encoded once and filled in per recipient.

Building an EmailMessage per recipient costs far more than the send itself. Instead each variant is serialised
once (multipart/alternative, UTF-8, quoted-printable) with every placeholder on a line of its own between soft
line breaks, so that a recipient's values drop in as bytes and the encoding stays valid: a soft break ("=" at
the end of a line) disappears when decoded, and the values are quoted-printable encoded on their own.
"""

from __future__ import annotations

import hashlib
import re
from email import policy as email_policy
from email import quoprimime
from email.utils import format_datetime

from pipeline.delivery.backend import IssueMeta, Recipient, RenderedVariant

POLICY = email_policy.SMTP  # CRLF line ends, RFC 2047 for non-ASCII headers
CRLF = b"\r\n"
_SOFT = b"=\r\n"
_QP_LINE = 75  # content characters per encoded line, leaving room for the "=" of a soft break (RFC 2045: 76)
_QP_SAFE = re.compile(r"[!-<>-~]*")  # printable ASCII except "=": needs no quoting
_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+")
_PLAIN_HEADER = re.compile(r"[ -~]{0,900}")
_STATIC_ORDER = ("Subject", "Date", "List-Id")


def header_line(name: str, value: str) -> bytes:
    """One folded header line; non-ASCII values are RFC 2047 encoded."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} must not contain a line break")
    if _PLAIN_HEADER.fullmatch(value) and name not in ("To", "From", "Subject"):
        return f"{name}: {value}\r\n".encode("ascii")
    return POLICY.header_factory(name, value).fold(policy=POLICY).encode("ascii")


class AddressError(ValueError):
    """An address that cannot be written into a message or an SMTP envelope."""


def ascii_domain(domain: str) -> str:
    """An internationalised domain as IDNA (punycode), the only form DNS and SMTP envelopes know."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressError("its domain cannot be written in IDNA (punycode)") from None


def wire_address(email: str) -> str:
    """The address as headers and envelopes carry it: the domain in IDNA, the local part as it is. Never an
    RFC 2047 encoded word, which no address may contain."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or not domain or any(c in email for c in "\r\n<>,\"") or email != email.strip():
        raise AddressError("it is not a plain address (name@example.com)")
    return f"{local}@{ascii_domain(domain)}"


def needs_smtputf8(email: str) -> bool:
    """A local part beyond ASCII (josé@…) can only travel with SMTPUTF8 (RFC 6531) and UTF-8 headers (RFC 6532)."""
    return not email.rpartition("@")[0].isascii()


def _to_line(email: str) -> bytes:
    if _SIMPLE_ADDRESS.fullmatch(email):
        return b"To: " + email.encode("ascii") + CRLF
    # RFC 6532: the address itself, in UTF-8 where it must be; an SMTP relay gets it only with SMTPUTF8.
    return b"To: " + wire_address(email).encode("utf-8") + CRLF


def qp_value(value: str) -> bytes:
    """A substituted value as quoted-printable lines, ending with a soft break."""
    if _QP_SAFE.fullmatch(value):
        raw = value.encode("ascii")
        chunks = [raw[i:i + _QP_LINE] for i in range(0, len(raw), _QP_LINE)] or [b""]
        return _SOFT.join(chunks) + _SOFT
    encoded = quoprimime.body_encode(value.encode("utf-8").decode("latin-1"), maxlinelen=_QP_LINE + 1, eol="\r\n")
    return encoded.encode("ascii") + _SOFT


def _qp_segment(text: str) -> bytes:
    # body_encode works on one byte per character: give it the UTF-8 bytes as latin-1 characters.
    return quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), maxlinelen=_QP_LINE + 1,
                                  eol="\r\n").encode("ascii")


def _encode_body(text: str, placeholders: tuple[str, ...]) -> list[bytes | str]:
    """Quoted-printable pieces: bytes, and placeholder names where a recipient's value goes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not placeholders:
        return [_qp_segment(text)]
    pattern = re.compile("(" + "|".join(re.escape(p) for p in placeholders) + ")")
    pieces: list[bytes | str] = []
    for i, chunk in enumerate(pattern.split(text)):
        if i % 2:
            if pieces and isinstance(pieces[-1], bytes) and pieces[-1] and not pieces[-1].endswith(CRLF):
                pieces.append(_SOFT)
            pieces.append(chunk)
        elif chunk:
            pieces.append(_qp_segment(chunk))
    if pieces and isinstance(pieces[-1], str):
        pieces.append(b"")  # the value's trailing soft break then ends the body, which decoders accept
    return pieces


class MessageTemplate:
    """One issue's variant as message bytes with slots; ``render(recipient)`` fills them."""

    def __init__(self, issue: IssueMeta, variant: RenderedVariant):
        self.issue = issue
        self.variant = variant
        digest = hashlib.sha256((variant.html + "\0" + variant.text).encode("utf-8")).hexdigest()[:24]
        # "=" cannot occur at the start of a quoted-printable line, so this boundary never meets the content.
        boundary = f"==============={digest}=="
        self._from = header_line("From", issue.sender)
        static = {"Subject": variant.subject, "Date": format_datetime(issue.fire_at), "List-Id": issue.list_id}
        head = b"".join(header_line(name, static[name]) for name in _STATIC_ORDER)
        head += b"MIME-Version: 1.0\r\n"
        head += f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode("ascii")
        parts: list[bytes | str] = [head]
        for subtype, body in (("plain", variant.text), ("html", variant.html)):
            parts.append(f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
                         f"Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii"))
            parts.extend(_encode_body(body, variant.placeholders))
            parts.append(CRLF)
        parts.append(f"--{boundary}--\r\n".encode("ascii"))
        self._pieces = _merge(parts)

    def render(self, recipient: Recipient) -> bytes:
        """The full message for one recipient, ready for SMTP or an .eml file."""
        values = {name: qp_value(recipient.substitutions[name]) for name in self.variant.placeholders}
        head = [self._from, _to_line(recipient.email), header_line("Message-ID", recipient.message_id)]
        head.extend(header_line(k, v) for k, v in recipient.headers.items())
        return b"".join(head) + b"".join(p if isinstance(p, bytes) else values[p] for p in self._pieces)


def _merge(parts: list[bytes | str]) -> list[bytes | str]:
    out: list[bytes | str] = []
    for p in parts:
        if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += p
        else:
            out.append(p)
    return out

