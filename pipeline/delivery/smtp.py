"""The SMTP backend: one connection for many messages, through the organisation's own relay.

``PIPELINE_SMTP_URL`` is ``smtp://user:pass@host:port`` (add ``?starttls=1`` for STARTTLS) or ``smtps://…`` for
TLS from the first byte. Each message goes as MAIL, RCPT, DATA, so that a drop before DATA is retried on a new
connection, while a drop during DATA is an unknown outcome (the server may have taken it).

Failures by cause: a 5xx refusal of one recipient (or of its message) fails that recipient alone, with the server's
words; trouble with the path (refused or dropped connections, timeouts, 4xx answers) is retried with backoff for
up to PIPELINE_RELAY_PATIENCE, and then the send stops with RelayUnavailable, leaving its recipients waiting; a
wrong setting (a certificate we do not trust, a refused login, a refused sender) stops it at once.
"""

from __future__ import annotations

import logging
import re
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
from pipeline.delivery.patience import Patience
from pipeline.errors import ConfigError, DeliveryError, DeliveryHalted, DeliverySetupError, DeliveryUnknown

log = logging.getLogger("pipeline.delivery.smtp")

_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")
_RELAY_DENIED = re.compile(r"relay(ing)? (access )?(denied|not permitted)", re.IGNORECASE)
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


class _Transient(Exception):
    """The path failed (no connection, a timeout, a 4xx answer); nothing was accepted: retry after a wait."""


def server_words(code: int, message: bytes | str | None) -> str:
    """ "550 5.1.1 user unknown": the server's reply with any address in it blanked (reasons reach logs)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else (message or "")
    text = _ADDRESS.sub("<address>", " ".join(text.split()))[:200]
    return f"{code} {text}".strip()


class SmtpBackend:
    name = "smtp"
    max_batch = 200

    def __init__(self, url: str, *, rate: float = 0.0, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 ca_file: str | None = None, local_hostname: str | None = None, patience: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.target = parse_smtp_url(url)
        self.rate = rate
        self.timeout = timeout
        self.ca_file = ca_file
        if ssl_context is None:
            try:
                ssl_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"PIPELINE_SMTP_CA_FILE: cannot read {ca_file} as a PEM CA bundle ({exc})") from None
        self.ssl_context = ssl_context
        self.where = f"the relay at {self.target.host}:{self.target.port}"
        self.patience = Patience(patience, where=self.where, sleep=sleep, clock=clock)
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

    def _open(self) -> smtplib.SMTP:
        t = self.target
        if t.implicit_tls:
            conn = smtplib.SMTP_SSL(t.host, t.port, timeout=self.timeout, context=self.ssl_context,
                                    local_hostname=self.local_hostname)
        else:
            conn = smtplib.SMTP(t.host, t.port, timeout=self.timeout, local_hostname=self.local_hostname)
        try:
            conn.ehlo()
            if t.starttls:
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if t.username:
                conn.login(t.username, t.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> smtplib.SMTP:
        """A new session, or _Transient for the path's trouble, or DeliverySetupError for a wrong setting."""
        try:
            conn = self._open()
        except ssl.SSLCertVerificationError as exc:
            raise DeliverySetupError(
                f"PIPELINE_SMTP_CA_FILE: {self.where} presented a certificate that is not trusted "
                f"({exc.verify_message or exc}); set PIPELINE_SMTP_CA_FILE to the CA bundle that signed it"
                + (f" (now {self.ca_file})" if self.ca_file else "")) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise _Transient(f"the TLS connection closed ({type(exc).__name__})") from None
        except ssl.SSLError as exc:
            raise DeliverySetupError(f"PIPELINE_SMTP_URL: TLS with {self.where} failed ({exc.reason or exc}); "
                                     "check ?starttls=1 or smtps:// and the port") from None
        except smtplib.SMTPAuthenticationError:
            raise DeliverySetupError(f"PIPELINE_SMTP_URL: {self.where} refused the user name or password") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliverySetupError(f"PIPELINE_SMTP_URL: {self.where} does not support that ({exc}); "
                                     "check ?starttls=1 or smtps://") from None
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600 and not isinstance(exc, smtplib.SMTPConnectError):
                raise DeliverySetupError(f"PIPELINE_SMTP_URL: {self.where} refused the session "
                                         f"({server_words(exc.smtp_code, exc.smtp_error)})") from None
            raise _Transient(server_words(exc.smtp_code, exc.smtp_error)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
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

    def _transact(self, conn: smtplib.SMTP, sender: str, rcpt: str, data: bytes) -> str | None:
        """One message. Returns None when accepted, the reason when this recipient cannot be sent to (the server's
        words when it refused them for good)."""
        try:
            envelope_rcpt, envelope_sender = wire_address(rcpt), wire_address(sender)
        except AddressError as exc:
            return f"address cannot be sent: {exc}"
        utf8 = needs_smtputf8(rcpt) or needs_smtputf8(sender)
        if utf8 and not conn.has_extn("smtputf8"):
            # Refused here with the reason: smtplib would otherwise fail to encode the command, or the relay garble it.
            return "the relay does not offer SMTPUTF8, which an address with letters such as é before the @ needs"
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        rcpt, sender = envelope_rcpt, envelope_sender
        try:
            code, msg = conn.mail(sender, options)
            if code != 250:
                self._refused(conn, code, msg)
                raise DeliverySetupError(f"PIPELINE_FROM: {self.where} refused the sender "
                                         f"({server_words(code, msg)})")
            code, msg = conn.rcpt(rcpt)
            if code not in (250, 251):
                self._refused(conn, code, msg)
                words = server_words(code, msg)
                if _RELAY_DENIED.search(words):  # "554 5.7.1 Relay access denied": ours to fix, not theirs
                    raise DeliverySetupError(f"PIPELINE_SMTP_URL: {self.where} will not relay for us ({words}); "
                                             "give it a user name and password, or allow this host")
                return words
        except (smtplib.SMTPServerDisconnected, OSError):
            raise _Dropped() from None
        try:
            code, msg = conn.data(data)
        except (smtplib.SMTPServerDisconnected, OSError):
            raise DeliveryUnknown("the SMTP connection dropped during DATA") from None
        if code != 250:
            self._refused(conn, code, msg)
            return server_words(code, msg)
        return None

    @staticmethod
    def _refused(conn: smtplib.SMTP, code: int, msg: bytes) -> None:
        """After a refusal: 421 is the server going away, any other 4xx is the path's trouble (retried); a 5xx
        is for good, and the caller says whose."""
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            raise _Dropped() from None
        if code == 421:
            raise _Dropped()
        if 400 <= code < 500:
            raise _Transient(server_words(code, msg))

    def send_batch(self, issue: IssueMeta, variant: RenderedVariant,
                   recipients: Sequence[Recipient]) -> list[Outcome]:
        template = self._cache.get(issue, variant)
        sender = parseaddr(issue.sender)[1]
        outcomes: list[Outcome] = []
        for r in recipients:
            data = template.render(r)
            try:
                outcomes.append(self._send_one(sender, r, data))
            except DeliveryUnknown as exc:
                self._drop()
                outcomes.append(Outcome(subscriber_id=r.subscriber_id, state="unknown", reason=str(exc)))
            except DeliveryHalted as exc:
                # Nobody's own failure: what went out is kept, and the rest of the batch waits.
                self._drop()
                exc.outcomes = tuple(outcomes)
                raise
        return outcomes

    def _send_one(self, sender: str, r: Recipient, data: bytes) -> Outcome:
        drops = 0
        while True:
            try:
                conn = self._connection()
                self._throttle()
                try:
                    refused = self._transact(conn, sender, r.email, data)
                finally:
                    self._last_used = self._clock()
            except _Dropped:
                self._drop()
                drops += 1
                if drops > 1:  # a plain reconnect first; then the relay is in trouble
                    self.patience.wait("the connection keeps closing")
                log.info("SMTP connection dropped; reconnecting", extra={"action": "smtp_reconnect", "attempt": drops})
                continue
            except _Transient as exc:
                self._drop()
                self.patience.wait(str(exc))
                continue
            self.patience.ok()
            if refused is not None:
                code = refused.split(" ", 1)[0]
                return Outcome(subscriber_id=r.subscriber_id, state="failed", reason=refused,
                               provider_status=code if code.isdigit() else None)
            return Outcome(subscriber_id=r.subscriber_id, state="sent", provider_status="250")

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
