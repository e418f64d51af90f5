"""Fetch one outside feed, bounded in time and size, reaching public addresses only. The only httpx importer.

Each hop of a redirect is checked on its own: http(s) only, the host resolved once by us (netguard), and the
connection made to exactly the address that was checked, through a network backend that ignores the host name
(so nothing resolves it a second time). TLS still verifies the certificate against the host name.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpcore
import httpx

from pipeline.curation.netguard import AddressPolicy, Refused, Unresolved

REDIRECTS = (301, 302, 303, 307, 308)
# httpx logs every request at INFO; our own log says what each source gave, once.
logging.getLogger("httpx").setLevel(logging.WARNING)
MAX_RETRY_AFTER = timedelta(days=2)


@dataclass(frozen=True, kw_only=True)
class Limits:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0  # for the whole fetch, redirects included
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 3


@dataclass(frozen=True, kw_only=True)
class Fetched:
    status: int  # 200, or 304 when the feed has not changed since the validators we sent
    url: str  # after redirects
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None


DEFAULT_LIMITS = Limits()


class FetchError(Exception):
    """A fetch that failed; the message names the cause. ``retry_after``: the server asked us to wait."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def user_agent(site_url: str) -> str:
    return f"mbc-pipeline/0.1 (feed reader for {site_url.rstrip('/')}/; checks each feed at most hourly)"


def retry_after(value: str | None, *, at: datetime) -> timedelta | None:
    """Retry-After as seconds or an HTTP date, kept within two days."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value[:9]))
    else:
        try:
            wait = parsedate_to_datetime(value) - at
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(timedelta(0), min(wait, MAX_RETRY_AFTER))


def _time_left(deadline: float, timeout: float | None) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the total time allowed for this fetch ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Every read and write waits no longer than what is left of the whole fetch: a server that trickles
    bytes just faster than the read timeout is still stopped."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(self._deadline, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(self._deadline, timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        inner = self._stream.start_tls(ssl_context, server_hostname, _time_left(self._deadline, timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the address that netguard checked, whatever host name the request carries."""

    def __init__(self, address: str, deadline: float):
        self._address = address
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self._inner.connect_tcp(self._address, port, timeout=_time_left(self._deadline, timeout),
                                         local_address=local_address, socket_options=socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are never used for outside feeds")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _client(address: str, deadline: float, limits: Limits) -> httpx.Client:
    transport = httpx.HTTPTransport(retries=0, trust_env=False)
    # httpx has no public way to give its transport a network backend; the pool is where httpcore takes one.
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                              network_backend=_PinnedBackend(address, deadline),
                                              max_connections=1, retries=0)
    timeout = httpx.Timeout(connect=limits.connect_timeout, read=limits.read_timeout, write=limits.read_timeout,
                            pool=limits.connect_timeout)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


def _read_body(response: httpx.Response, limits: Limits) -> bytes:
    too_big = f"the feed is larger than {limits.max_bytes // (1024 * 1024)} MB; stopped reading"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise FetchError(too_big + f" (it says {int(declared):,} bytes)")
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("identity", "", "gzip", "x-gzip"):
        raise FetchError(f"the server sent content encoded as {coding[:40]!r}, which we do not read")
    inflate = zlib.decompressobj(wbits=47) if coding in ("gzip", "x-gzip") else None
    parts: list[bytes] = []
    size = raw = 0
    for chunk in response.iter_raw(65536):
        raw += len(chunk)
        if inflate is not None:
            # Inflate no more than the limit allows, so a small gzip bomb cannot grow in memory.
            chunk = inflate.decompress(chunk, limits.max_bytes - size + 1)
        size += len(chunk)
        if size > limits.max_bytes or raw > limits.max_bytes:
            raise FetchError(too_big)
        parts.append(chunk)
    return b"".join(parts)


def fetch(url: str, *, policy: AddressPolicy, agent: str, at: datetime, etag: str | None = None,
          last_modified: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Fetched:
    """GET ``url`` by hand through at most ``limits.max_redirects`` redirects. Raises FetchError."""
    deadline = time.monotonic() + limits.total_timeout
    current = url
    try:
        for _ in range(limits.max_redirects + 1):
            target = httpx.URL(current)
            if target.scheme not in ("http", "https"):
                raise FetchError(f"{current[:200]!r}: only http and https addresses are fetched")
            address = policy.address_for(target.host, target.port or (443 if target.scheme == "https" else 80))
            headers = {"User-Agent": agent, "Accept-Encoding": "gzip",
                       "Accept": "application/rss+xml, application/atom+xml, application/rdf+xml, "
                                 "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"}
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
            with _client(address, deadline, limits) as client, client.stream("GET", target, headers=headers) as resp:
                if resp.status_code in REDIRECTS:
                    location = resp.headers.get("location", "").strip()
                    if not location:
                        raise FetchError(f"the server answered {resp.status_code} without saying where to go")
                    current = str(target.join(location))
                    continue
                if resp.status_code == 304:
                    return Fetched(status=304, url=current, etag=etag, last_modified=last_modified)
                if resp.status_code != 200:
                    wait = retry_after(resp.headers.get("retry-after"), at=at) if resp.status_code in (429, 503) else None
                    hint = f"; it asked us to wait {_duration(wait)}" if wait is not None else ""
                    raise FetchError(f"the server answered {resp.status_code} {resp.reason_phrase[:60]}{hint}",
                                     retry_after=wait)
                body = _read_body(resp, limits)
                return Fetched(status=200, url=current, body=body, etag=resp.headers.get("etag"),
                               last_modified=resp.headers.get("last-modified"))
        raise FetchError(f"more than {limits.max_redirects} redirects; stopped at {current[:200]}")
    except Unresolved as exc:
        raise FetchError(str(exc)) from None
    except Refused as exc:
        raise FetchError(f"refused: {exc}") from None
    except httpx.TimeoutException as exc:
        if time.monotonic() >= deadline or "total time" in str(exc):
            raise FetchError(f"the feed took longer than {limits.total_timeout:g} s in all (a slow or never-ending "
                             "response); stopped") from None
        if isinstance(exc, httpx.ConnectTimeout):
            raise FetchError(f"timed out: could not connect within {limits.connect_timeout:g} s") from None
        raise FetchError(f"timed out: the server sent nothing for {limits.read_timeout:g} s") from None
    except httpx.InvalidURL as exc:
        raise FetchError(f"{current[:200]!r} is not a valid address ({exc})") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {str(exc)[:200] or 'the connection failed'}") from None


def _duration(wait: timedelta) -> str:
    seconds = int(wait.total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
