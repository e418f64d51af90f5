"""The SMTP backend: one connection for many messages, through the organisation's own relay.

``PIPELINE_SMTP_URL`` is ``smtp://user:pass@host:port`` (add ``?starttls=1`` for STARTTLS) or ``smtps://…`` for
TLS from the first byte. Each message goes as MAIL, RCPT, DATA, so that a drop before DATA is retried on a new
connection, while a drop during DATA is an unknown outcome (the server may have taken it). A refused recipient
fails alone; the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from pipeline.delivery.backend import IssueMeta, Outcome, Recipient, RenderedVariant
from pipeline.delivery.memory import TemplateCache
from pipeline.delivery.mime import AddressError, needs_smtputf8, wire_address
from pipeline.errors import ConfigError, DeliveryError, DeliveryUnknown

log = logging.getLogger("pipeline.delivery.smtp")

MAX_RECONNECTS = 3
IDLE_CHECK_S = 10.0  # after this long without a command, check the connection with NOOP before sending


@dataclass(frozen=True, kw_only=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:
        return f"SmtpTarget(host={self.host!r}, port={self.port}, tls={self.implicit_tls or self.starttls})"


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("PIPELINE_SMTP_URL: use smtp://user:pass@host:587?starttls=1 or smtps://user:pass@host:465")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 25)
    except ValueError:
        raise ConfigError("PIPELINE_SMTP_URL: the port is not a number") from None
    return SmtpTarget(host=parts.hostname, port=port, implicit_tls=implicit,
                      starttls=query.get("starttls", "0").lower() in ("1", "true", "yes"),
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None)


class _Dropped(Exception):
    """The connection went away before the server could have accepted the message: safe to resend."""


class SmtpBackend:
    name = "smtp"
    max_batch = 200

    def __init__(self, url: str, *, rate: float = 0.0, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.target = parse_smtp_url(url)
        self.rate = rate
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.local_hostname = local_hostname
        self._sleep, self._clock = sleep, clock
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._next_slot = 0.0
        self._cache = TemplateCache()
        self.connections = 0

    def __repr__(self) -> str:
        return f"SmtpBackend({self.target!r})"

    # -- connection ---------------------------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        try:
            if t.implicit_tls:
                conn = smtplib.SMTP_SSL(t.host, t.port, timeout=self.timeout, context=self.ssl_context,
                                        local_hostname=self.local_hostname)
            else:
                conn = smtplib.SMTP(t.host, t.port, timeout=self.timeout, local_hostname=self.local_hostname)
            conn.ehlo()
            if t.starttls:
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if t.username:
                conn.login(t.username, t.password or "")
        except smtplib.SMTPAuthenticationError:
            raise DeliveryError("PIPELINE_SMTP_URL: the SMTP server refused the user name or password") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"PIPELINE_SMTP_URL: the server does not support that ({exc}); "
                                "check ?starttls=1 or smtps://") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"PIPELINE_SMTP_URL: cannot connect to {t.host}:{t.port} "
                                f"({type(exc).__name__}: {exc}); check the host, port and TLS setting") from None
        self.connections += 1
        self._last_used = self._clock()
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None and self._clock() - self._last_used > IDLE_CHECK_S:
            try:
                if self._conn.noop()[0] != 250:
                    self._drop()
            except (smtplib.SMTPException, OSError):
                self._drop()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    # -- sending ------------------------------------------------------------------------------------------------

    def _throttle(self) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        if self._next_slot > now:
            self._sleep(self._next_slot - now)
            now = self._next_slot
        self._next_slot = max(self._next_slot, now) + 1.0 / self.rate

    def _transact(self, conn: smtplib.SMTP, sender: str, rcpt: str, data: bytes) -> Outcome | None:
        """One message. Returns None when accepted, a failed Outcome (without id) when refused."""
        try:
            envelope_rcpt, envelope_sender = wire_address(rcpt), wire_address(sender)
        except AddressError as exc:
            return Outcome(subscriber_id=0, state="failed", reason=f"address cannot be sent: {exc}")
        utf8 = needs_smtputf8(rcpt) or needs_smtputf8(sender)
        if utf8 and not conn.has_extn("smtputf8"):
            # Refused here with the reason: smtplib would otherwise fail to encode the command, or the relay garble it.
            return Outcome(subscriber_id=0, state="failed",
                           reason="the relay does not offer SMTPUTF8, which an address with letters such as é "
                                  "before the @ needs")
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        rcpt, sender = envelope_rcpt, envelope_sender
        try:
            code, _ = conn.mail(sender, options)
            if code != 250:
                conn.rset()
                if code == 421:
                    raise _Dropped()
                return Outcome(subscriber_id=0, state="failed", reason=f"sender refused ({code})")
            code, _ = conn.rcpt(rcpt)
            if code not in (250, 251):
                conn.rset()
                if code == 421:
                    raise _Dropped()
                return Outcome(subscriber_id=0, state="failed", reason=f"recipient refused ({code})",
                               provider_status=str(code))
        except smtplib.SMTPServerDisconnected:
            raise _Dropped() from None
        except OSError:
            raise _Dropped() from None
        try:
            code, _ = conn.data(data)
        except (smtplib.SMTPServerDisconnected, OSError):
            raise DeliveryUnknown("the SMTP connection dropped during DATA") from None
        if code != 250:
            conn.rset()
            return Outcome(subscriber_id=0, state="failed", reason=f"message refused ({code})", provider_status=str(code))
        return None

    def send_batch(self, issue: IssueMeta, variant: RenderedVariant,
                   recipients: Sequence[Recipient]) -> list[Outcome]:
        template = self._cache.get(issue, variant)
        sender = parseaddr(issue.sender)[1]
        outcomes: list[Outcome] = []
        for index, r in enumerate(recipients):
            data = template.render(r)
            try:
                outcomes.append(self._send_one(sender, r, data))
            except DeliveryUnknown as exc:
                self._drop()
                outcomes.append(Outcome(subscriber_id=r.subscriber_id, state="unknown", reason=str(exc)))
            except DeliveryError as exc:
                if not outcomes:
                    raise
                # Part of the batch went out: keep those, and fail the rest with the reason.
                outcomes.extend(Outcome(subscriber_id=x.subscriber_id, state="failed", reason=str(exc))
                                for x in recipients[index:])
                break
        return outcomes

    def _send_one(self, sender: str, r: Recipient, data: bytes) -> Outcome:
        for attempt in range(MAX_RECONNECTS + 1):
            conn = self._connection()
            self._throttle()
            try:
                refused = self._transact(conn, sender, r.email, data)
            except _Dropped:
                self._drop()
                if attempt == MAX_RECONNECTS:
                    raise DeliveryError("the SMTP server keeps closing the connection") from None
                log.info("SMTP connection dropped; reconnecting", extra={"action": "smtp_reconnect", "attempt": attempt + 1})
                continue
            finally:
                self._last_used = self._clock()
            if refused is not None:
                return Outcome(subscriber_id=r.subscriber_id, state="failed", reason=refused.reason,
                               provider_status=refused.provider_status)
            return Outcome(subscriber_id=r.subscriber_id, state="sent", provider_status="250")
        raise AssertionError("unreachable")

    def send_message(self, msg: EmailMessage) -> None:
        """One transactional message. A refusal raises DeliveryError."""
        sender = parseaddr(str(msg["From"]))[1]
        rcpts = [addr for _name, addr in (parseaddr(v) for v in msg.get_all("To", []))]
        if not sender or not rcpts:
            raise DeliveryError("a message for SMTP needs From and To headers")
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        for rcpt in rcpts:
            outcome = self._send_one(sender, Recipient(subscriber_id=0, email=rcpt, message_id=""), data)
            if outcome.state != "sent":
                raise DeliveryError(f"the SMTP server refused the message: {outcome.reason}")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                try:
                    conn.close()
                except OSError:
                    pass
