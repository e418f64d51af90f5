"""The SendGrid backend: the only module that imports ``sendgrid``.

One variant goes out as up to 1,000 personalizations per Mail Send request. Each personalization carries its
recipient's links (``substitutions``), headers (List-Unsubscribe…) and ``custom_args`` (issue, batch and an
opaque recipient id, never an address), so the Event Webhook can find the subscriber again. Tracking is off
unless the operator turns it on: whether someone opened an email about hospice care is health data.

Failures: 429, 5xx and a refused connection are retried with exponential backoff and jitter, honouring
``Retry-After`` and ``X-RateLimit-Reset``, for up to PIPELINE_RELAY_PATIENCE; then RelayUnavailable stops the send
and its recipients wait. 401/403 are wrong settings (DeliverySetupError: stop before marking anyone); 400/413 raise
a clear DeliveryError at once; a timeout raises DeliveryUnknown, since SendGrid has no idempotency key and the
request may have been accepted.
"""

from __future__ import annotations

import json
import logging
import operator
import random
import re
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from json.encoder import encode_basestring as _encode_string
from urllib.error import URLError

import python_http_client.exceptions as http_errors
from python_http_client.client import Response
from sendgrid import SendGridAPIClient

from pipeline.delivery.backend import IssueMeta, Outcome, Recipient, RenderedVariant
from pipeline.delivery.patience import Patience
from pipeline.errors import (
    DeliveryError,
    DeliveryHalted,
    DeliverySetupError,
    DeliveryUnknown,
    RelayUnavailable,
)

log = logging.getLogger("pipeline.delivery.sendgrid")
# The HTTP client logs request headers (the API key) and payloads (addresses) at DEBUG: keep it above that.
logging.getLogger("python_http_client").setLevel(logging.INFO)

# Limits copied from SendGrid's Mail Send OpenAPI spec (tsg_mail_v3.yaml, requestBodies.PostMailSend);
# tests/unit/test_sendgrid_limits.py checks them against the spec file when it is present.
MAX_PERSONALIZATIONS = 1000  # personalizations.maxItems
MAX_SUBSTITUTION_BYTES = 10_000  # personalizations[].substitutions: "10,000 bytes per personalization object"
MAX_CUSTOM_ARGS_BYTES = 10_000  # personalizations[].custom_args: "may not exceed 10,000 bytes"
MAX_CATEGORIES = 10  # categories.maxItems
MAX_CATEGORY_LENGTH = 255  # categories.items.maxLength
# personalizations[].headers / headers: "You may not override the following headers" (compared case-insensitively)
FORBIDDEN_HEADERS = frozenset(h.lower() for h in (
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type", "Content-Transfer-Encoding",
    "To", "From", "Subject", "Reply-To", "CC", "BCC"))

# personalizations[].to[].email has "format: email": an RFC 5321 mailbox, ASCII only. One address outside it makes
# SendGrid refuse the whole request, so such a recipient is left out of it (and failed) instead.
NON_ASCII_ADDRESS = ("SendGrid takes ASCII addresses only (its spec's format: email); send to this address through "
                     "an SMTP relay that supports SMTPUTF8")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
FATAL_STATUSES = frozenset({401, 403})
ARG_ISSUE, ARG_BATCH, ARG_RECIPIENT = "mbc_issue", "mbc_batch", "mbc_rid"


def substitutions_size(substitutions: Mapping[str, str]) -> int:
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in substitutions.items())


def _address(value: str) -> dict[str, str]:
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def tracking_settings(enabled: bool) -> dict:
    return {"click_tracking": {"enable": enabled, "enable_text": enabled},
            "open_tracking": {"enable": enabled},
            "subscription_tracking": {"enable": False},  # we provide our own unsubscribe, always
            "ganalytics": {"enable": enabled}}


_PLACEHOLDER = re.compile(r"%[%sd]")


class BatchEncoder:
    """Serialises Mail Send requests for one (issue, variant): the shared part once, then each recipient."""

    def __init__(self, issue: IssueMeta, variant: RenderedVariant, *, tracking: bool = False):
        self.issue_arg = str(issue.issue_id if issue.issue_id is not None else 0)
        common = {
            "from": _address(issue.sender),
            "subject": variant.subject,
            # text/plain must come before text/html (SendGrid's content ordering rule).
            "content": [{"type": "text/plain", "value": variant.text}, {"type": "text/html", "value": variant.html}],
            "headers": {"List-Id": issue.list_id},
            "categories": [issue.digest[:MAX_CATEGORY_LENGTH]],
            "tracking_settings": tracking_settings(tracking),
        }
        tail = json.dumps(common, ensure_ascii=False, separators=(",", ":"))
        self._tail = "]," + tail[1:]
        self._shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, int, bool]] = {}

    def personalization(self, r: Recipient, batch_id: str) -> dict:
        """One recipient's personalization as a dict: what ``encode`` writes as text (the tests compare them)."""
        headers = {"Message-ID": r.message_id}
        for name, value in r.headers.items():
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"header {name} cannot be set through SendGrid")
            headers[name] = value
        return {"to": [{"email": r.email}], "substitutions": dict(r.substitutions), "headers": headers,
                "custom_args": {ARG_ISSUE: self.issue_arg, ARG_BATCH: batch_id, ARG_RECIPIENT: str(r.subscriber_id)}}

    def encode(self, recipients: Sequence[Recipient], batch_id: str) -> tuple[str, list[Outcome]]:
        """The request body, and outcomes for recipients left out because they break a limit."""
        if len(recipients) > MAX_PERSONALIZATIONS:
            raise ValueError(f"at most {MAX_PERSONALIZATIONS} recipients per request")
        # Each personalization is written straight to JSON text, every value through the json module's own
        # escaper: the same document json.dumps(self.personalization(r, batch_id)) gives, without the dicts.
        # Recipients of one digest share their substitution and header names, so the JSON around the values is
        # built once per set of names (a "shape") and each recipient only fills it in.
        q = _encode_string
        tail = self._args_tail(batch_id)
        shapes = self._shapes
        parts, refused = [], []
        for r in recipients:
            if not r.email.isascii():
                refused.append(Outcome(subscriber_id=r.subscriber_id, state="failed", reason=NON_ASCII_ADDRESS))
                continue
            subs, headers = r.substitutions, r.headers
            shape = shapes.get((tuple(subs), tuple(headers)))
            if shape is None:
                shape = shapes[(tuple(subs), tuple(headers))] = self._shape(subs, headers)
            template, key_chars, own_message_id = shape
            values = subs.values()
            # UTF-8 takes at most 4 bytes a character: only a long set of substitutions needs counting in bytes.
            if ((key_chars + sum(map(len, values))) * 4 > MAX_SUBSTITUTION_BYTES
                    and substitutions_size(subs) > MAX_SUBSTITUTION_BYTES):
                refused.append(Outcome(subscriber_id=r.subscriber_id, state="failed",
                                       reason=f"substitutions exceed {MAX_SUBSTITUTION_BYTES} bytes"))
                continue
            parts.append((template + tail) % (
                q(r.email), *map(q, values), q(str(r.message_id if own_message_id else headers["Message-ID"])),
                *[q(v) for k, v in headers.items() if k != "Message-ID"], int(r.subscriber_id)))
        if not parts:
            return "", refused
        return '{"personalizations":[' + ",".join(parts) + self._tail, refused

    def encode_like(self, prototype: Recipient, markers: Sequence[str], rows: Sequence[tuple[int, Sequence[str]]],
                    batch_id: str) -> tuple[str, list[Outcome]]:
        """What ``encode`` writes, for recipients that differ from ``prototype`` only where its values hold
        ``markers``: each row is (subscriber id, the texts that take the markers' places, in order). The JSON around
        the texts is written once from ``prototype``, whose address must be one of the markers, so each recipient
        costs only the escaping of its own texts: about half of ``encode``'s time (tests check that both write the
        same text)."""
        if len(rows) > MAX_PERSONALIZATIONS:
            raise ValueError(f"at most {MAX_PERSONALIZATIONS} recipients per request")
        fmt, slots, fixed_bytes, sized = self._like(prototype, tuple(markers), batch_id)
        pick = operator.itemgetter(*slots, len(markers))  # the escaped texts in template order, then the id
        # Bytes of the marked substitutions are at most 4 a character, times the most often a text recurs there.
        bound = 4 * max((sized.count(i) for i in sized), default=0)
        address = markers.index(prototype.email)
        q = _encode_string
        parts, refused = [], []
        for sid, texts in rows:
            if not texts[address].isascii():
                refused.append(Outcome(subscriber_id=sid, state="failed", reason=NON_ASCII_ADDRESS))
                continue
            # As in encode: only a long set of substitutions needs counting in bytes.
            if (fixed_bytes + bound * sum(map(len, texts)) > MAX_SUBSTITUTION_BYTES
                    and fixed_bytes + sum(len(texts[i].encode("utf-8")) for i in sized) > MAX_SUBSTITUTION_BYTES):
                refused.append(Outcome(subscriber_id=sid, state="failed",
                                       reason=f"substitutions exceed {MAX_SUBSTITUTION_BYTES} bytes"))
                continue
            values = [q(t)[1:-1] for t in texts]
            values.append(int(sid))
            parts.append(fmt % pick(values))
        if not parts:
            return "", refused
        return '{"personalizations":[' + ",".join(parts) + self._tail, refused

    def _like(self, prototype: Recipient, markers: tuple[str, ...],
              batch_id: str) -> tuple[str, list[int], int, list[int]]:
        """encode's %-template for ``prototype`` with each marker left as %s: (template, which text goes in each
        %s, the substitutions' bytes besides the markers, the markers in the substitutions)."""
        subs, headers = prototype.substitutions, prototype.headers
        template, _key_chars, own_message_id = self._shape(subs, headers)
        values = [prototype.email, *subs.values(), str(prototype.message_id if own_message_id else headers["Message-ID"]),
                  *[v for k, v in headers.items() if k != "Message-ID"]]
        marker = re.compile("|".join(map(re.escape, markers)))
        filled, slots = [], []
        for value in values:
            found = marker.findall(value)
            slots += [markers.index(m) for m in found]
            filled.append('"' + "%s".join(_encode_string(piece)[1:-1].replace("%", "%%")
                                          for piece in marker.split(value)) + '"')
        fills = iter(filled)
        fmt = _PLACEHOLDER.sub(lambda m: next(fills) if m.group(0) == "%s" else m.group(0),
                               template + self._args_tail(batch_id))
        fixed = sum(len(k.encode("utf-8")) + len(marker.sub("", v).encode("utf-8")) for k, v in subs.items())
        sized = [markers.index(m) for v in subs.values() for m in marker.findall(v)]
        return fmt, slots, fixed, sized

    def _args_tail(self, batch_id: str) -> str:
        q = _encode_string
        tail = f',"custom_args":{{"{ARG_ISSUE}":{q(self.issue_arg)},"{ARG_BATCH}":{q(batch_id)},"{ARG_RECIPIENT}":"'
        return tail.replace("%", "%%") + '%d"}}'

    def _shape(self, subs: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str, int, bool]:
        """The %-template of one personalization for these substitution and header names (values left as %s)."""
        for name in headers:
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"header {name} cannot be set through SendGrid")
        q = _encode_string

        def key(name: str) -> str:
            return q(name).replace("%", "%%")
        template = ('{"to":[{"email":%s}],"substitutions":{' + ",".join(f"{key(k)}:%s" for k in subs)
                    + '},"headers":{"Message-ID":%s' + "".join(f",{key(k)}:%s" for k in headers if k != "Message-ID")
                    + "}")
        return template, sum(len(k) for k in subs), "Message-ID" not in headers


class BatchPreparer:
    """Serialises a batch's Mail Send requests ahead of sending: (body, ids in it, outcomes of those left out)."""

    def __init__(self, *, tracking: bool = False):
        self.tracking = tracking
        self._encoders: dict[tuple[IssueMeta, str], BatchEncoder] = {}

    def __call__(self, issue: IssueMeta, variant: RenderedVariant, recipients: Sequence[Recipient],
                 batch_id: str) -> list[tuple[str, list[int], list[Outcome]]]:
        encoder = self._encoder(issue, variant)
        return self._chunked(recipients, lambda chunk: encoder.encode(chunk, batch_id), lambda r: r.subscriber_id)

    def prepare_like(self, issue: IssueMeta, variant: RenderedVariant, prototype: Recipient, markers: Sequence[str],
                     rows: Sequence[tuple[int, Sequence[str]]], batch_id: str) -> list[tuple[str, list[int], list[Outcome]]]:
        """What calling this preparer gives, for recipients described as in ``BatchEncoder.encode_like``."""
        encoder = self._encoder(issue, variant)
        return self._chunked(rows, lambda chunk: encoder.encode_like(prototype, markers, chunk, batch_id),
                             lambda row: row[0])

    @staticmethod
    def _chunked(items: Sequence, encode: Callable, id_of: Callable) -> list[tuple[str, list[int], list[Outcome]]]:
        out = []
        for start in range(0, len(items), MAX_PERSONALIZATIONS):
            chunk = items[start:start + MAX_PERSONALIZATIONS]
            body, refused = encode(chunk)
            left_out = {o.subscriber_id for o in refused}
            out.append((body, [id_of(item) for item in chunk if id_of(item) not in left_out], refused))
        return out

    def _encoder(self, issue: IssueMeta, variant: RenderedVariant) -> BatchEncoder:
        key = (issue, variant.key)
        encoder = self._encoders.get(key)
        if encoder is None:
            if len(self._encoders) > 64:
                self._encoders.clear()
            encoder = self._encoders[key] = BatchEncoder(issue, variant, tracking=self.tracking)
        return encoder

    def clear(self) -> None:
        self._encoders.clear()


class SendGridBackend:
    name = "sendgrid"
    max_batch = MAX_PERSONALIZATIONS

    def __init__(self, api_key: str, *, host: str = "https://api.sendgrid.com", tracking: bool = False,
                 timeout: float = 30.0, max_retries: int | None = None, backoff: float = 0.5,
                 max_backoff: float = 60.0, patience: float = 120.0, sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        if not api_key:
            raise DeliveryError("SENDGRID_API_KEY: not set; create an API key with Mail Send permission")
        self._client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # The package's own client for /v3/mail/send: its URL, its headers (the key among them) and its mapping
        # of HTTP errors. Requests go through its _make_request, not through its generated method, which formats
        # the whole body into a debug log line on every call, logged or not: 1.6 ms of a 600 KB batch, holding
        # the interpreter lock, and every address in the text.
        self._mail = self._client.client.mail.send
        self._url = self._mail._build_url(None)
        self._opener = urllib.request.build_opener()
        self.tracking = tracking
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep, self._rng, self._clock = sleep, rng, clock
        self.patience = Patience(patience, where=f"SendGrid at {host.rstrip('/')} (PIPELINE_SENDGRID_HOST)",
                                 sleep=sleep, clock=monotonic, max_tries=max_retries)
        self._preparer = BatchPreparer(tracking=tracking)
        self._fatal: DeliveryError | None = None
        self.requests = 0

    def __repr__(self) -> str:
        return f"SendGridBackend(host={self._client.host!r})"

    def send_batch(self, issue: IssueMeta, variant: RenderedVariant,
                   recipients: Sequence[Recipient]) -> list[Outcome]:
        return self.send_prepared(self.prepare_batch(issue, variant, recipients, uuid.uuid4().hex[:16]))

    def prepare_batch(self, issue: IssueMeta, variant: RenderedVariant, recipients: Sequence[Recipient],
                      batch_id: str) -> list[tuple[str, list[int], list[Outcome]]]:
        return self._preparer(issue, variant, recipients, batch_id)

    def batch_preparer(self) -> BatchPreparer:
        """What prepare_batch does, as an object without the HTTP client: it can be sent to a worker process."""
        return BatchPreparer(tracking=self.tracking)

    def send_prepared(self, prepared: list[tuple[str, list[int], list[Outcome]]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for body, ids, refused in prepared:
            outcomes.extend(refused)
            if not body:
                continue
            try:
                status = str(self.post(body))
            except DeliveryHalted as exc:
                # Nobody's own failure: what went out is kept and the rest waits, but a request that may have
                # been taken leaves its recipients unknown.
                if isinstance(exc, RelayUnavailable) and exc.in_doubt:
                    outcomes.extend(Outcome(i, "unknown", f"{exc}; it may or may not have been accepted")
                                    for i in ids)
                exc.outcomes = tuple(outcomes)
                raise
            outcomes.extend([Outcome(i, "sent", None, status) for i in ids])  # positional: a thousand a batch
        return outcomes

    def send_message(self, msg: EmailMessage) -> None:
        """One transactional message (confirmation, welcome), with tracking off like every send."""
        self.post(json.dumps(message_payload(msg, tracking=self.tracking), ensure_ascii=False))

    def post(self, body: str) -> int:
        """POST a serialised Mail Send body, retrying what is worth retrying. Returns the HTTP status."""
        if self._fatal is not None:
            raise self._fatal  # a bad key stays bad: no request storm, one error per batch
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                request = urllib.request.Request(self._url, data=body.encode("utf-8"), method="POST", headers={
                    **self._mail.request_headers, "Content-Type": "application/json; charset=utf-8"})
                status = Response(self._mail._make_request(self._opener, request, timeout=self.timeout)).status_code
            except http_errors.HTTPError as exc:
                status = int(getattr(exc, "status_code", 0) or 0)
                if status not in RETRY_STATUSES:
                    raise self._http_error(status, exc) from None
                # A 502/504 comes from a gateway that may have passed the request on: if the last answer is
                # one, the batch in hand is unknown rather than waiting.
                headers = getattr(exc, "headers", None)
                try:
                    self.patience.wait(f"it answered {status}", in_doubt=status in (502, 504),
                                       at_least=self.retry_delay(attempt, headers))
                except RelayUnavailable as gone:
                    # Whoever tries again later (the outbox sender) waits at least as long as SendGrid asked.
                    gone.retry_after = _asked_delay(headers, now=self._clock())
                    raise
                continue
            except TimeoutError as exc:
                self._timed_out()
                raise DeliveryUnknown(f"SendGrid did not answer within {self.timeout:g}s; "
                                      "the batch may or may not have been accepted") from exc
            except URLError as exc:
                if isinstance(exc.reason, TimeoutError | socket.timeout):
                    self._timed_out()
                    raise DeliveryUnknown(f"SendGrid did not answer within {self.timeout:g}s; "
                                          "the batch may or may not have been accepted") from None
                self.patience.wait(f"cannot reach it: {exc.reason}")
                continue
            except (ConnectionError, OSError) as exc:
                # The connection broke after the request may have gone out.
                raise DeliveryUnknown(f"SendGrid connection broke ({type(exc).__name__}); outcome unknown") from None
            self.patience.ok()
            return status

    def _timed_out(self) -> None:
        """A timeout leaves its batch unknown; timeouts that last past the patience stop the send."""
        try:
            self.patience.failed(f"no answer within {self.timeout:g}s", in_doubt=True)
        except RelayUnavailable as exc:
            exc.in_doubt = True
            raise

    def retry_delay(self, attempt: int, headers) -> float:
        """Exponential backoff with full jitter, but never sooner than the server asked."""
        delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1))) * (0.5 + self._rng() / 2)
        asked = _asked_delay(headers, now=self._clock())
        if asked is not None:
            delay = max(delay, min(asked, self.max_backoff * 5))
        return delay

    def _http_error(self, status: int, exc: Exception) -> DeliveryError:
        detail = _error_detail(exc)
        if status == 401:
            err = DeliverySetupError("SENDGRID_API_KEY: SendGrid refused the key (401); check it is current and "
                                     "has the Mail Send permission")
        elif status == 403:
            err = DeliverySetupError(f"SENDGRID_API_KEY: SendGrid forbade the send (403{detail}); check the key's "
                                     "permissions and that PIPELINE_FROM is a verified sender")
        elif status == 413:
            err = DeliveryError("SendGrid refused a request as too large (413); the digest is too big to send")
        elif status == 400:
            err = DeliveryError(f"SendGrid rejected the request (400{detail})")
        else:
            err = DeliveryError(f"SendGrid answered {status}{detail}")
        if status in FATAL_STATUSES:
            self._fatal = err  # raised again as it is: its outcomes are set per batch

        return err

    def close(self) -> None:
        self._preparer.clear()


def _asked_delay(headers, *, now: float) -> float | None:
    if not headers:
        return None
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


def _error_detail(exc: Exception) -> str:
    """The first error message SendGrid gave, if any. Bodies can echo addresses, so only `field: message`."""
    try:
        body = json.loads(getattr(exc, "body", b"") or b"{}")
        first = (body.get("errors") or [{}])[0]
    except (ValueError, AttributeError, TypeError):
        return ""
    message = str(first.get("message") or "")[:200]
    if "@" in message:
        return ""
    field = first.get("field")
    return f": {field}: {message}" if field else (f": {message}" if message else "")


def message_payload(msg: EmailMessage, *, tracking: bool = False) -> dict:
    """A Mail Send body for one EmailMessage: its addresses, subject, text and HTML parts and its safe headers."""
    to = [{"email": addr, **({"name": name} if name else {})} for name, addr in getaddresses(msg.get_all("To", []))]
    if not to or not msg["From"] or not msg["Subject"]:
        raise DeliveryError("a message for SendGrid needs To, From and Subject headers")
    content = []
    for subtype in ("plain", "html"):
        part = msg.get_body(preferencelist=(subtype,))
        if part is not None and part.get_content_type() == f"text/{subtype}":
            content.append({"type": f"text/{subtype}", "value": part.get_content()})
    if not content:
        raise DeliveryError("a message for SendGrid needs a text or HTML body")
    skip = FORBIDDEN_HEADERS | {"mime-version", "date"}
    headers = {k: str(v) for k, v in msg.items() if k.lower() not in skip}
    personalization: dict = {"to": to}
    if headers:
        personalization["headers"] = headers
    return {"personalizations": [personalization], "from": _address(str(msg["From"])), "subject": str(msg["Subject"]),
            "content": content, "tracking_settings": tracking_settings(tracking)}
