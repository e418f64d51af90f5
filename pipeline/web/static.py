"""Serve a directory of built files (public/, the app's own assets) with validators, 304s and gzip.

The ETag is a hash of the file's bytes, so it is the same in every process and after a rebuild that changed
nothing. Bodies and their gzip form are kept in a small cache keyed by (path, mtime, size).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import threading
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path, PurePosixPath

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

FEED_TYPES = (
    (".rss.xml", "application/rss+xml; charset=utf-8"),
    (".atom.xml", "application/atom+xml; charset=utf-8"),
)
TEXT_TYPES = {
    ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".xml": "application/xml; charset=utf-8", ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".xsl": "application/xslt+xml",
}
COMPRESSIBLE = ("text/", "application/rss+xml", "application/atom+xml", "application/feed+json", "application/json",
                "application/xml", "image/svg+xml", "application/xslt+xml")
MIN_GZIP = 256
MAX_CACHED = 8 * 1024 * 1024


def content_type(rel: PurePosixPath) -> str:
    name = rel.name.lower()
    for suffix, ctype in FEED_TYPES:
        if name.endswith(suffix):
            return ctype
    if name.endswith(".json") and rel.parts[:1] == ("feeds",):
        return "application/feed+json; charset=utf-8"
    suffix = rel.suffix.lower()
    if suffix in TEXT_TYPES:
        return TEXT_TYPES[suffix]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class Entry:
    body: bytes
    gz: bytes | None
    etag: str
    gz_etag: str
    last_modified: str
    mtime: int
    content_type: str


def _accepts_gzip(value: str) -> bool:
    for part in value.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip"):
            q = params.replace(" ", "").removeprefix("q=")
            try:
                return float(q) > 0 if q else True
            except ValueError:
                return False
    return False


def _etag_matches(header: str, *tags: str) -> bool:
    if header.strip() == "*":
        return True
    wanted = {t.strip().removeprefix("W/") for t in header.split(",")}
    return any(t in wanted for t in tags)


class PublicFiles:
    """An ASGI app for one directory. Dot-files (such as half-written ``.x.tmp``) are never served."""

    def __init__(self, directory: Path, *, cache_control: str = "public, max-age=300", max_entries: int = 512,
                 not_found=None):
        self.directory = Path(directory).resolve()
        self.not_found = not_found
        self.cache_control = cache_control
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[tuple[int, int], Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def _locate(self, route_path: str) -> tuple[Path | None, bool]:
        """(file, is_directory_without_slash)."""
        parts = [p for p in route_path.split("/") if p]
        if any(p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
            return None, False
        path = self.directory.joinpath(*parts)
        try:
            if path.is_dir():
                if route_path and not route_path.endswith("/"):
                    return path, True
                path = path / "index.html"
            if not path.is_file() or not path.resolve().is_relative_to(self.directory):
                return None, False
        except OSError:
            return None, False
        return path, False

    def _cached(self, path: Path) -> tuple[Entry | None, tuple[int, int] | None]:
        """The cached entry if the file is unchanged (one stat, no read), else (None, stamp)."""
        try:
            st = path.stat()
        except OSError:
            return None, None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cache.get(str(path))
            if cached and cached[0] == stamp:
                self._cache.move_to_end(str(path))
                return cached[1], stamp
        return None, stamp

    def _load(self, path: Path) -> Entry | None:
        try:
            st = path.stat()
            body = path.read_bytes()
        except OSError:
            return None
        rel = PurePosixPath(path.relative_to(self.directory).as_posix())
        ctype = content_type(rel)
        digest = hashlib.sha256(body).hexdigest()[:32]
        gz = None
        if len(body) >= MIN_GZIP and ctype.startswith(COMPRESSIBLE):
            gz = gzip.compress(body, compresslevel=6, mtime=0)
        entry = Entry(body=body, gz=gz, etag=f'"{digest}"', gz_etag=f'"{digest}-gz"',
                      last_modified=formatdate(int(st.st_mtime), usegmt=True), mtime=int(st.st_mtime),
                      content_type=ctype)
        if len(body) <= MAX_CACHED:
            with self._lock:
                self._cache[str(path)] = ((st.st_mtime_ns, st.st_size), entry)
                self._cache.move_to_end(str(path))
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return entry

    @staticmethod
    def _not_modified(headers: Headers, entry: Entry) -> bool:
        inm = headers.get("if-none-match")
        if inm is not None:
            return _etag_matches(inm, entry.etag, entry.gz_etag)
        ims = headers.get("if-modified-since")
        if ims:
            try:
                return entry.mtime <= int(parsedate_to_datetime(ims).timestamp())
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await Response("Method not allowed", status_code=405, headers={"Allow": "GET, HEAD"})(scope, receive, send)
            return
        root = scope.get("root_path", "")
        route_path = scope["path"][len(root):] if root and scope["path"].startswith(root) else scope["path"]
        # Locating and stat-ing are single cheap syscalls; only reading and compressing go to a thread.
        path, needs_slash = self._locate(route_path)
        if needs_slash:
            # One leading slash only: "//feeds/" (or "/\\feeds/") would be a protocol-relative URL to another host.
            target = "/" + scope["path"].lstrip("/\\") + "/"
            await RedirectResponse(target, status_code=308)(scope, receive, send)
            return
        entry = None
        if path is not None:
            entry, stamp = self._cached(path)
            if entry is None and stamp is not None:
                entry = await anyio.to_thread.run_sync(self._load, path)
        if entry is None:
            if self.not_found is not None:
                await self.not_found(scope, receive, send)
            else:
                await Response("Not found", status_code=404, media_type="text/plain")(scope, receive, send)
            return
        headers = Headers(scope=scope)
        use_gz = entry.gz is not None and _accepts_gzip(headers.get("accept-encoding", ""))
        common = {"Last-Modified": entry.last_modified, "Cache-Control": self.cache_control,
                  "ETag": entry.gz_etag if use_gz else entry.etag}
        if entry.gz is not None:
            common["Vary"] = "Accept-Encoding"
        if self._not_modified(headers, entry):
            await Response(status_code=304, headers=common)(scope, receive, send)
            return
        body = entry.gz if use_gz else entry.body
        if use_gz:
            common["Content-Encoding"] = "gzip"
        response = Response(b"" if method == "HEAD" else body, headers=common, media_type=entry.content_type)
        if method == "HEAD":
            response.headers["Content-Length"] = str(len(body))
        await response(scope, receive, send)


def asset_version(path: Path) -> str:
    """A short content hash for cache-busting asset URLs."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    except OSError:
        return "0"

