"""JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/), written with the standard library."""

from __future__ import annotations

import json
from datetime import datetime

from pipeline.feeds.model import Entry, FeedSpec

VERSION = "https://jsonfeed.org/version/1.1"


def rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _item(e: Entry) -> dict:
    item: dict = {
        "id": e.id,
        "url": e.url,
        "title": e.title,
        "summary": e.summary,
        "content_html": e.content_html,
        "date_published": rfc3339(e.published),
        "date_modified": rfc3339(e.updated),
        "tags": [label for _, label in e.categories],
        "language": "en",
    }
    if e.external_url:
        item["external_url"] = e.external_url
    if e.author:
        item["authors"] = [{"name": e.author}]
    return item


def feed_dict(spec: FeedSpec) -> dict:
    return {
        "version": VERSION,
        "title": spec.title_in("json"),
        "description": spec.description,
        "home_page_url": spec.home_url,
        "feed_url": spec.link("json").url,
        "language": "en",
        "items": [_item(e) for e in spec.entries],
    }


def json_bytes(spec: FeedSpec) -> bytes:
    return (json.dumps(feed_dict(spec), ensure_ascii=False, indent=2) + "\n").encode("utf-8")
