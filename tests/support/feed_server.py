"""A loopback HTTP server that stands in for the outside world: fixture feeds (RSS 2.0, Atom, RDF) with ETag and
Last-Modified, and one route for each hostile case. Stalling routes end when the server stops."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
LAST_MODIFIED = "Wed, 18 Nov 2026 21:00:00 GMT"
MB = 1024 * 1024

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title><link>https://bomb.example.net/</link><description>x</description>
<item><title>&lol9;</title><link>https://bomb.example.net/1</link></item></channel></rss>
"""

INVALID = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Broken</title>
<item><title>Never closed</titl><link>https://broken.example.net/1</link></item></channel>"""


def flood(n: int = 10_000) -> bytes:
    items = "".join(f"<item><title>Item {i}</title><link>https://flood.example.net/{i}</link></item>" for i in range(n))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Flood</title><link>https://flood.example.net/</link>'
            f"<description>x</description>{items}</channel></rss>").encode()


class FeedServer:
    """``url(path)`` gives an address on the server; ``hits`` counts requests per path; ``requests`` keeps headers."""

    def __init__(self, host: str = "127.0.0.1"):
        self.stop = threading.Event()
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.files: dict[str, bytes] = {f"/{p.name}": p.read_bytes() for p in FIXTURES.glob("*.xml")}
        self.files["/bomb.xml"] = BOMB
        self.files["/invalid.xml"] = INVALID
        self.files["/flood.xml"] = flood()
        self.redirects: dict[str, str] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.hits[path] += 1
                server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                try:
                    server.route(self, path)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, h, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def route(self, h, path: str) -> None:
        if path in self.redirects:
            return self._send(h, 302, headers={"Location": self.redirects[path]})
        if path.startswith("/loop/"):
            n = int(path.rsplit("/", 1)[1])
            return self._send(h, 302, headers={"Location": f"/loop/{n + 1}"})
        if path in self.files and path != "/gzip-bomb.xml":
            body = self.files[path]
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if h.headers.get("If-None-Match") == etag:
                return self._send(h, 304, headers={"ETag": etag})
            return self._send(h, 200, body, {"Content-Type": "application/xml", "ETag": etag,
                                             "Last-Modified": LAST_MODIFIED})
        if path.startswith("/gz/") and f"/{path[4:]}" in self.files:  # a fixture, gzip-encoded
            return self._send(h, 200, gzip.compress(self.files[f"/{path[4:]}"]),
                              {"Content-Type": "application/xml", "Content-Encoding": "gzip"})
        if path == "/gzip-bomb.xml":  # 40 kB on the wire, 40 MB once inflated
            if "/gzip-bomb.xml" not in self.files:
                self.files["/gzip-bomb.xml"] = gzip.compress(b"<rss>" + b" " * (40 * MB))
            return self._send(h, 200, self.files["/gzip-bomb.xml"],
                              {"Content-Type": "application/xml", "Content-Encoding": "gzip"})
        if path == "/huge.xml":  # honest about its size
            h.send_response(200)
            h.send_header("Content-Length", str(6 * MB))
            h.end_headers()
            return self._stream(h, 6 * MB)
        if path == "/huge-chunked.xml":  # no Content-Length: only counting while streaming finds it out
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            return self._stream(h, 64 * MB, chunked=True)
        if path == "/chunked-no-end.xml":  # a little, then nothing and never the last chunk
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            part = b'<?xml version="1.0"?><rss version="2.0"><channel>'
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            h.wfile.flush()
            self.stop.wait()
            return None
        if path == "/slowloris.xml":  # one byte at a time, each well inside the read timeout, for ever
            h.send_response(200)
            h.send_header("Content-Length", str(MB))
            h.end_headers()
            while not self.stop.wait(0.05):
                h.wfile.write(b" ")
                h.wfile.flush()
            return None
        if path == "/busy.xml":
            return self._send(h, 429, b"slow down", {"Retry-After": "3600"})
        return self._send(h, 404, b"not found")

    def _stream(self, h, total: int, *, chunked: bool = False) -> None:
        block = b"<!-- " + b"x" * 65_000 + b" -->"
        sent = 0
        while sent < total and not self.stop.is_set():
            if chunked:
                h.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            else:
                h.wfile.write(block[: total - sent])
            sent += len(block)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
