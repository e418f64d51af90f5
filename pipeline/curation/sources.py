"""content/sources.yaml: the outside feeds we watch. Each problem is a Problem pinned to its line and field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from pipeline.errors import ConfigError, Problem

FILE = "sources.yaml"
_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_FIELDS = {"id", "name", "url", "topics", "keywords", "origin"}
MAX_NAME = 200


@dataclass(frozen=True, kw_only=True)
class WatchedSource:
    id: str
    name: str  # "National Cancer Institute: Cancer Currents"
    url: str
    topics: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    origin: str = ""  # how "From …" reads; the name when not given

    @property
    def origin_text(self) -> str:
        return self.origin or self.name

    def wants(self, title: str, summary: str) -> bool:
        """Kept when any keyword appears in the title or summary, ignoring case; every item without keywords."""
        if not self.keywords:
            return True
        haystack = f"{title}\n{summary}".casefold()
        return any(k.casefold() in haystack for k in self.keywords)


def _line(node: yaml.Node | None, key: str | None = None) -> int:
    if isinstance(node, yaml.MappingNode) and key is not None:
        for k, v in node.value:
            if k.value == key:
                return v.start_mark.line + 1
    return node.start_mark.line + 1 if node is not None else 1


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip() and not _CONTROL_RE.search(value) and len(value.strip()) <= MAX_NAME:
        return value.strip()
    return None


def load_sources(content_dir: Path, *, topic_ids: frozenset[str] | None = None
                 ) -> tuple[tuple[WatchedSource, ...], list[Problem]]:
    """The watched sources and the problems found. A missing file means no sources, which is fine."""
    path = Path(content_dir) / FILE
    shown = str(path)
    problems: list[Problem] = []

    def bad(line: int, field: str, message: str) -> None:
        problems.append(Problem(path=shown, line=line, field=field, message=message))

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return (), []
    except (OSError, UnicodeDecodeError) as exc:
        return (), [Problem(path=shown, line=1, field="file", message=f"cannot be read ({exc}); save it as UTF-8 text")]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return (), [Problem(path=shown, line=(mark.line + 1) if mark else 1, field="yaml",
                            message=f"invalid YAML: {getattr(exc, 'problem', exc)}; check quoting and indentation")]
    if data is None:
        return (), []
    entries = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return (), [Problem(path=shown, line=1, field="sources",
                            message="needs a list 'sources:' of {id, name, url, topics, keywords}")]
    seq = next((v for k, v in root.value if k.value == "sources"), None) if isinstance(root, yaml.MappingNode) else None
    sources: list[WatchedSource] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        node = seq.value[i] if isinstance(seq, yaml.SequenceNode) and i < len(seq.value) else None
        field = f"sources[{i}]"
        if not isinstance(entry, dict):
            bad(_line(node), field, "must be a mapping with id, name, url and topics")
            continue
        before = len(problems)
        for key in entry:
            if str(key) not in _FIELDS:
                bad(_line(node, str(key)), f"{field}.{key}",
                    f"is not a known field; use {', '.join(sorted(_FIELDS))}")
        source_id = entry.get("id")
        if not isinstance(source_id, str) or not _ID_RE.match(source_id) or len(source_id) > 64:
            bad(_line(node, "id"), f"{field}.id", "is required: lowercase words joined by hyphens, such as nci-cancer-currents")
        elif source_id in seen:
            bad(_line(node, "id"), f"{field}.id", f"{source_id!r} is used twice; each source needs its own id")
        else:
            seen.add(source_id)
            field = f"sources.{source_id}"
        name = _text(entry.get("name"))
        if name is None:
            bad(_line(node, "name"), f"{field}.name", f"is required: the publisher and feed, up to {MAX_NAME} characters")
        origin = entry.get("origin")
        if origin is not None and _text(origin) is None:
            bad(_line(node, "origin"), f"{field}.origin", "must be short text, such as 'the National Cancer Institute'")
        url = entry.get("url")
        parts = urlsplit(url.strip()) if isinstance(url, str) and not _CONTROL_RE.search(url) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
            bad(_line(node, "url"), f"{field}.url", "must be the feed's address, starting with https:// or http://")
        topics = entry.get("topics")
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            bad(_line(node, "topics"), f"{field}.topics", "must be a list of topic ids, such as [treatment-progress]")
        elif topic_ids is not None and (unknown := [t for t in topics if t not in topic_ids]):
            bad(_line(node, "topics"), f"{field}.topics",
                f"unknown topic ids {', '.join(unknown)}; use ids from content/topics.yaml")
        keywords = entry.get("keywords", [])
        if keywords is None:
            keywords = []
        if not isinstance(keywords, list) or not all(_text(k) for k in keywords):
            bad(_line(node, "keywords"), f"{field}.keywords",
                "must be a list of words or phrases, such as [breast cancer, oncology]")
        if len(problems) == before:
            sources.append(WatchedSource(id=source_id, name=name, url=url.strip(), topics=tuple(dict.fromkeys(topics)),
                                         keywords=tuple(k.strip() for k in keywords), origin=_text(origin) or ""))
    return tuple(sources), problems


def require_sources(content_dir: Path, *, topic_ids: frozenset[str] | None = None) -> tuple[WatchedSource, ...]:
    sources, problems = load_sources(content_dir, topic_ids=topic_ids)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError("\n".join(str(p) for p in errors))
    return sources
