"""A loopback SendGrid Mail Send endpoint for tests and benchmarks: a real HTTP server on 127.0.0.1.

It checks every request against the limits of SendGrid's published spec (personalizations ≤ 1,000,
substitutions ≤ 10,000 bytes each, no forbidden headers, subject, from and content present, custom_args
values are strings and carry no address) and answers 202, or whatever status was queued with ``cue``.
"""

from __future__ import annotations

import json
import resource
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.delivery.sendgrid_spec import (
    FORBIDDEN_HEADERS,
    MAX_CATEGORIES,
    MAX_CATEGORY_LENGTH,
    MAX_CUSTOM_ARGS_BYTES,
    MAX_PERSONALIZATIONS,
    MAX_SUBSTITUTION_BYTES,
)


def validate(body: dict) -> list[str]:
    """Problems with one Mail Send body, as SendGrid's spec defines it. Empty when valid."""
    problems: list[str] = []
    pers = body.get("personalizations")
    if not isinstance(pers, list) or not pers:
        return ["personalizations: required, a non-empty array"]
    if len(pers) > MAX_PERSONALIZATIONS:
        problems.append(f"personalizations: {len(pers)} > {MAX_PERSONALIZATIONS}")
    sender = body.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        problems.append("from: required, with an email")
    top_subject = body.get("subject")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        problems.append("content: required, at least one")
    else:
        for i, c in enumerate(content):
            if not c.get("type") or not c.get("value"):
                problems.append(f"content[{i}]: type and value required (minLength 1)")
        if len(content) > 1 and content[0].get("type") != "text/plain":
            problems.append("content: text/plain must come first")
    cats = body.get("categories", [])
    if len(cats) > MAX_CATEGORIES or len(set(cats)) != len(cats) or any(len(c) > MAX_CATEGORY_LENGTH for c in cats):
        problems.append("categories: at most 10 unique names of at most 255 characters")
    if any("@" in c for c in cats):
        problems.append("categories: carries an email address")
    if "custom_args" in body and not isinstance(body["custom_args"], str):
        problems.append("custom_args: top-level custom_args must be a string per the spec; use personalizations")
    problems.extend(_headers_problems("headers", body.get("headers", {})))
    for i, p in enumerate(pers):
        problems.extend(_personalization_problems(i, p, top_subject))
    return problems


def _personalization_problems(i: int, p: dict, top_subject) -> list[str]:
    # Exact byte counts only when a cheap bound says a limit might be crossed: a UTF-8 character is at most 4
    # bytes, and json.dumps writes a character as at most 12 bytes (a surrogate pair of \uXXXX escapes).
    out: list[str] = []
    to = p.get("to")
    if not isinstance(to, list) or not to or not all("@" in str(t.get("email", "")) for t in to):
        out.append(f"personalizations[{i}].to: required, with emails")
    elif not all(str(t["email"]).isascii() for t in to):
        out.append(f"personalizations[{i}].to: an address outside format: email (RFC 5321, ASCII only)")
    if not (top_subject or p.get("subject")):
        out.append(f"personalizations[{i}]: no subject")
    subs = p.get("substitutions")
    if subs:
        chars = 0
        for k, v in subs.items():
            if not isinstance(v, str):
                out.append(f"personalizations[{i}].substitutions: values must be strings")
                break
            chars += len(k) + len(v)
        else:
            if chars * 4 > MAX_SUBSTITUTION_BYTES and sum(
                    len(k.encode()) + len(v.encode()) for k, v in subs.items()) > MAX_SUBSTITUTION_BYTES:
                out.append(f"personalizations[{i}].substitutions: over {MAX_SUBSTITUTION_BYTES} bytes")
    args = p.get("custom_args")
    if args:
        chars = 0
        for k, v in args.items():
            if not isinstance(v, str):
                out.append(f"personalizations[{i}].custom_args: values must be strings")
                break
            if "@" in v or "@" in k:
                out.append(f"personalizations[{i}].custom_args: carries an email address")
                break
            chars += len(k) + len(v)
        else:
            if (chars * 12 + 8 * len(args) + 2 > MAX_CUSTOM_ARGS_BYTES
                    and len(json.dumps(args).encode()) > MAX_CUSTOM_ARGS_BYTES):
                out.append(f"personalizations[{i}].custom_args: over {MAX_CUSTOM_ARGS_BYTES} bytes")
    headers = p.get("headers")
    if headers:
        out.extend(_headers_problems(f"personalizations[{i}].headers", headers))
    return out


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _headers_problems(where: str, headers: dict) -> list[str]:
    out: list[str] = []
    for k, v in headers.items():
        if k.lower() in FORBIDDEN_HEADERS:
            out.append(f"{where}: forbidden header {k}")
        if not isinstance(v, str):
            out.append(f"{where}: values must be strings")
    return sorted(set(out))


@dataclass
class Sink:
    """What the sink saw. ``keep`` keeps each parsed body (tests); benchmarks keep counts only."""

    keep: bool = True
    check: bool = True
    requests: int = 0
    accepted: int = 0
    recipients: int = 0
    problems: list[str] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    per_recipient: Counter = field(default_factory=Counter)  # (issue, rid) -> copies accepted
    cues: deque = field(default_factory=deque)  # (status, headers, delay_s) to answer next, in order
    auth: list[str] = field(default_factory=list)
    delay: float = 0.0  # seconds to wait before answering each accepted request (crash tests)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cpu_at_reset: float = 0.0  # the sink process's CPU seconds at the last reset (benchmarks report the difference)
    handling_s: float = 0.0  # wall seconds spent in POST handlers since the last reset (read body to answer)

    def cue(self, status: int, headers: dict | None = None, *, times: int = 1, delay: float = 0.0) -> None:
        for _ in range(times):
            self.cues.append((status, headers or {}, delay))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sink: Sink

    def log_message(self, *_args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        sink = self.sink
        if self.path == "/stats":
            with sink.lock:
                dup = sum(1 for n in sink.per_recipient.values() if n > 1)
                stats = {"cpu_s": round(_cpu() - sink.cpu_at_reset, 2), "handling_s": round(sink.handling_s, 2),
                         "requests": sink.requests, "accepted": sink.accepted, "recipients": sink.recipients,
                         "distinct": len(sink.per_recipient), "duplicated": dup, "problems": sink.problems[:20]}
            return self._answer(200, stats)
        if self.path == "/reset":
            with sink.lock:
                sink.requests = sink.accepted = sink.recipients = 0
                sink.cpu_at_reset = _cpu()
                sink.handling_s = 0.0
                sink.per_recipient.clear()
                sink.problems.clear()
                sink.bodies.clear()
            return self._answer(200, {})
        self._answer(404, None)

    def do_POST(self) -> None:  # noqa: N802
        started = time.perf_counter()
        try:
            self._post()
        finally:
            with self.sink.lock:
                self.sink.handling_s += time.perf_counter() - started

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        sink = self.sink
        with sink.lock:
            sink.requests += 1
            cue = sink.cues.popleft() if sink.cues else None
            sink.auth.append(self.headers.get("Authorization", ""))
        if self.path.rstrip("/") != "/v3/mail/send":
            return self._answer(404, {"errors": [{"message": "not found"}]})
        if cue is not None:
            status, headers, delay = cue
            if delay:
                threading.Event().wait(delay)
            return self._answer(status, {"errors": [{"message": f"cued {status}"}]}, headers)
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self._answer(401, {"errors": [{"message": "authorization required"}]})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._answer(400, {"errors": [{"message": "body is not JSON"}]})
        problems = validate(body) if sink.check else []
        if problems:
            with sink.lock:
                sink.problems.extend(problems)
            return self._answer(400, {"errors": [{"message": p} for p in problems[:5]]})
        pers = body["personalizations"]
        if sink.delay:
            threading.Event().wait(sink.delay)
        with sink.lock:
            sink.accepted += 1
            sink.recipients += sum(len(p["to"]) for p in pers)
            for p in pers:
                args = p.get("custom_args", {})
                sink.per_recipient[(args.get("mbc_issue"), args.get("mbc_rid") or p["to"][0]["email"])] += 1
            if sink.keep:
                sink.bodies.append(body)
        self._answer(202, None)

    def _answer(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        if data:
            self.send_header("Content-Type", "application/json")
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


class SinkServer:
    """``with SinkServer() as server:`` runs the sink on a free loopback port; ``server.url`` is its host."""

    def __init__(self, sink: Sink | None = None):
        self.sink = sink or Sink()
        handler = type("Handler", (_Handler,), {"sink": self.sink})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> SinkServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def main() -> None:
    """Run a sink in the foreground (for subprocess tests): prints its URL, serves until killed."""
    import sys

    server = SinkServer(Sink(keep=False))
    print(server.url, flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
