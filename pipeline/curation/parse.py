"""Parse fetched feed bytes into plain-text items. The only feedparser importer.

The bytes are already bounded (fetch.py). Before feedparser sees them, any document declaring entities is
refused: an entity-expansion bomb then never reaches a parser, whatever expat or the loose parser would do.
"""

from __future__ import annotations

import codecs
import io
import re
import xml.sax
from calendar import timegm
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import feedparser

from pipeline.content.render import html_to_text

MAX_ITEMS = 1000  # a feed announcing more is refused before parsing
KEEP_ITEMS = 200  # of those, the first this many are read
MAX_TITLE = 300
MAX_SUMMARY = 1000
MAX_GUID = 500
MAX_URL = 2000
_ENTITY = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_ITEM = re.compile(rb"<(?:[A-Za-z0-9_.-]+:)?(?:item|entry)[\s>/]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_SPACE = re.compile(r"\s+")


class ParseError(Exception):
    """The bytes are not a feed we read; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Item:
    guid: str | None
    url: str
    title: str
    summary: str
    published: datetime | None


@dataclass(frozen=True, kw_only=True)
class Parsed:
    items: tuple[Item, ...]
    found: int  # entries in the feed
    skipped: int  # entries without a usable http(s) link


def plain(value: object, limit: int) -> str:
    """Outside text as one line of plain text, at most ``limit`` characters."""
    if not isinstance(value, str):
        return ""
    text = _SPACE.sub(" ", _CONTROL.sub(" ", html_to_text(value[: limit * 20]))).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _ascii_view(body: bytes) -> bytes:
    """The document as ASCII-compatible bytes, so a check for markup also sees UTF-16 and UTF-32 documents."""
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            return body.decode(name, "replace").encode("utf-8", "replace")
    if body[:4] in (b"<\0?\0", b"\0<\0?"):
        return body.decode("utf-16-le" if body[0] else "utf-16-be", "replace").encode("utf-8", "replace")
    return body


def refuse_dangerous(body: bytes) -> None:
    view = _ascii_view(body)
    if _ENTITY.search(view):
        raise ParseError("declares XML entities (<!ENTITY …>), which feeds never need and an entity-expansion "
                         "attack does; refused without parsing")
    count = len(_ITEM.findall(view))
    if count > MAX_ITEMS:
        raise ParseError(f"has about {count:,} items; a watched feed may have at most {MAX_ITEMS:,}. "
                         "Use a shorter feed address (many sites have a limit= option) or remove the source")


def _when(entry) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return datetime.fromtimestamp(timegm(parsed), tz=UTC)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _link(entry) -> str | None:
    candidates = [entry.get("link")]
    guid = entry.get("id")
    if entry.get("guidislink") or (isinstance(guid, str) and guid.startswith(("http://", "https://"))):
        candidates.append(guid)
    for value in candidates:
        if isinstance(value, str) and len(value) <= MAX_URL and not _CONTROL.search(value):
            value = value.strip()
            parts = urlsplit(value)
            if parts.scheme.lower() in ("http", "https") and parts.hostname and " " not in value:
                return value
    return None


def parse_feed(body: bytes, *, base_url: str) -> Parsed:
    """Items in feed order (usually newest first). Raises ParseError for anything that is not a readable feed."""
    refuse_dangerous(body)
    result = feedparser.parse(io.BytesIO(body), response_headers={"content-location": base_url},
                              sanitize_html=True, resolve_relative_uris=True)
    error = result.get("bozo_exception")
    if isinstance(error, xml.sax.SAXException):
        where = ""
        if isinstance(error, xml.sax.SAXParseException):
            where = f" at line {error.getLineNumber()}, column {error.getColumnNumber()}"
        raise ParseError(f"is not well-formed XML{where} ({str(error.getMessage())[:120]}); nothing was taken from it")
    if not result.get("version") and not result.entries:
        raise ParseError("is not an RSS, Atom or RDF feed (no feed elements found); check the address")
    items: list[Item] = []
    skipped = 0
    for entry in result.entries[:KEEP_ITEMS]:
        url = _link(entry)
        if url is None:
            skipped += 1
            continue
        guid = entry.get("id")
        guid = guid.strip() if isinstance(guid, str) and 0 < len(guid.strip()) <= MAX_GUID else None
        summary = entry.get("summary") or entry.get("description") or ""
        items.append(Item(guid=guid, url=url, title=plain(entry.get("title"), MAX_TITLE),
                          summary=plain(summary, MAX_SUMMARY), published=_when(entry)))
    return Parsed(items=tuple(items), found=len(result.entries), skipped=skipped)
