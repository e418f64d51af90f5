"""The HTTP client for SendGrid's Mail Send: the only module that imports ``sendgrid``.

Failures: 429, 5xx and a refused connection are retried with exponential backoff and jitter, honouring
``Retry-After`` and ``X-RateLimit-Reset``, for up to PIPELINE_RELAY_PATIENCE; then RelayUnavailable stops the send
and its recipients wait. 401/403 are wrong settings (DeliverySetupError: stop before marking anyone); 400/413 raise
a clear DeliveryError at once; a timeout raises DeliveryUnknown, since SendGrid has no idempotency key and the
request may have been accepted.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
import urllib.request
from collections.abc import Callable
from urllib.error import URLError

import python_http_client.exceptions as http_errors
from python_http_client.client import Response
from sendgrid import SendGridAPIClient

from pipeline.delivery.patience import Patience
from pipeline.delivery.sendgrid_spec import FATAL_STATUSES, RETRY_STATUSES
from pipeline.errors import DeliveryError, DeliverySetupError, DeliveryUnknown, RelayUnavailable

# The HTTP client logs request headers (the API key) and payloads (addresses) at DEBUG: keep it above that.
logging.getLogger("python_http_client").setLevel(logging.INFO)


class MailSendClient:
    def __init__(self, api_key: str, *, host: str = "https://api.sendgrid.com", timeout: float = 30.0,
                 max_retries: int | None = None, backoff: float = 0.5, max_backoff: float = 60.0,
                 patience: float = 120.0, sleep: Callable[[float], None] = time.sleep,
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
        self.host = self._client.host
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep, self._rng, self._clock = sleep, rng, clock
        self.patience = Patience(patience, where=f"SendGrid at {host.rstrip('/')} (PIPELINE_SENDGRID_HOST)",
                                 sleep=sleep, clock=monotonic, max_tries=max_retries)
        self._fatal: DeliveryError | None = None
        self.requests = 0

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
