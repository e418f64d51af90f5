"""Read content/: topics.yaml and one <slug>.md per article. Bad files become Problems, never crashes."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from pipeline.content import frontmatter
from pipeline.content.model import STATUSES, Article, Library, Source, Topic
from pipeline.content.placeholders import placeholder_problems
from pipeline.errors import Problem

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
TOPIC_ID_RE = SLUG_RE
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_TAG_RE = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>")
MAX_TITLE = 200
MAX_SUMMARY = 300
MAX_FIELD = 500
MAX_BODY = 200_000
MAX_FILE = 400_000
KNOWN_FIELDS = {
    "title", "summary", "topics", "status", "publish_at", "sources", "reviewed_by", "reviewed_on",
    "updated_at", "author", "link", "content_notes", "origin",
}
MAX_ORIGIN = 200


class _Checker:
    """Collects problems for one file, each pinned to the line of its field."""

    def __init__(self, path: str, key_lines: dict[str, int], default_line: int):
        self.path = path
        self.key_lines = key_lines
        self.default_line = default_line
        self.problems: list[Problem] = []

    def add(self, field: str, message: str, severity: str = "error", line: int | None = None) -> None:
        top = field.split(".", 1)[0].split("[", 1)[0]
        self.problems.append(Problem(path=self.path, line=line or self.key_lines.get(top, self.default_line),
                                     field=field, message=message, severity=severity))

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def text(self, data: dict, field: str, *, required: bool, limit: int = MAX_FIELD,
             plain: bool = False) -> str | None:
        value = data.get(field)
        if value is None or value == "":
            if required:
                self.add(field, f"is required; add '{field}: …' to the front matter")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.add(field, f"must be text, not {type(value).__name__}; put it in quotes")
            return None
        value = str(value).strip()
        if _CONTROL_RE.search(value):
            self.add(field, "contains control characters; remove them")
            return None
        if len(value) > limit:
            self.add(field, f"is {len(value)} characters long; keep it to {limit} or fewer")
            return None
        if plain and _TAG_RE.search(value):
            self.add(field, "must be plain text; remove the HTML tags")
            return None
        return value

    def when(self, data: dict, field: str, *, required: bool) -> datetime | None:
        value = self.text(data, field, required=required, limit=64)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.add(field, f"{value!r} is not an ISO 8601 date-time; write e.g. 2026-11-02T09:00:00-05:00")
            return None
        if parsed.tzinfo is None:
            self.add(field, f"{value!r} has no UTC offset; add one, e.g. {value}-05:00")
            return None
        return parsed

    def day(self, data: dict, field: str, *, required: bool) -> date | None:
        value = self.text(data, field, required=required, limit=32)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.add(field, f"{value!r} is not a date; write it as YYYY-MM-DD")
            return None

    def url(self, value: object, field: str) -> str | None:
        if not isinstance(value, str) or _CONTROL_RE.search(value) or len(value) > 2000:
            self.add(field, "must be a web address starting with https:// or http://")
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in value.strip():
            self.add(field, f"{value!r} is not a web address; it must start with https:// or http://")
            return None
        return value.strip()


def load_topics(path: Path) -> tuple[tuple[Topic, ...], list[Problem]]:
    shown = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return (), [Problem(path=shown, line=1, field="topics", message="file not found; create content/topics.yaml")]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", 0) + 1
        return (), [Problem(path=shown, line=line, field="topics", message=f"invalid YAML: {exc}")]
    entries = data.get("topics") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        return (), [Problem(path=shown, line=1, field="topics", message="needs a list 'topics:' of {id, title, description}")]
    topics, problems, seen = [], [], set()
    for i, entry in enumerate(entries):
        field = f"topics[{i}]"
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("id", "title", "description")):
            problems.append(Problem(path=shown, line=1, field=field, message="needs text fields id, title and description"))
            continue
        if not TOPIC_ID_RE.match(entry["id"]) or entry["id"] in seen or entry["id"] == "all":
            problems.append(Problem(path=shown, line=1, field=f"{field}.id",
                                    message=f"{entry['id']!r} must be unique, lowercase-with-hyphens, and not 'all'"))
            continue
        seen.add(entry["id"])
        topics.append(Topic(id=entry["id"], title=entry["title"].strip(), description=entry["description"].strip(),
                            sensitive=bool(entry.get("sensitive", False))))
    return tuple(topics), problems


def parse_article(text: str, *, slug: str, path: str, topic_ids: frozenset[str] | set[str]) -> tuple[Article | None, list[Problem]]:
    """Parse and validate one article. Returns the Article, or None with at least one error."""
    if not SLUG_RE.match(slug) or len(slug) > 120:
        return None, [Problem(path=path, line=1, field="slug",
                              message="the file name must be lowercase words joined by hyphens, e.g. living-with-mbc.md")]
    if len(text) > MAX_FILE:
        return None, [Problem(path=path, line=1, field="file", message=f"is {len(text)} characters; split it or trim it below {MAX_FILE}")]
    try:
        doc = frontmatter.parse(text)
    except frontmatter.FrontMatterError as exc:
        return None, [Problem(path=path, line=exc.line, field="front matter", message=str(exc))]
    data = doc.data
    c = _Checker(path, doc.key_lines, 1)
    for key in data:
        if str(key) not in KNOWN_FIELDS:
            c.add(str(key), "is not a known field; check the spelling (known: " + ", ".join(sorted(KNOWN_FIELDS)) + ")",
                  severity="warning")
    title = c.text(data, "title", required=True, limit=MAX_TITLE)
    summary = c.text(data, "summary", required=True, limit=MAX_SUMMARY, plain=True)
    if data.get("link") and (title is None or summary is None):
        # A draft promoted from the curation inbox: say what is left to write, and that it is ours to write.
        c.problems = [replace(p, message=f"is still to write: our own plain-language {p.field}, not the outside "
                              "one (shown for reference in the comment at the top)")
                      if p.field in ("title", "summary") and p.message.startswith("is required") else p
                      for p in c.problems]
    status = c.text(data, "status", required=True, limit=20)
    if status is not None and status not in STATUSES:
        c.add("status", f"{status!r} is not a status; use one of: {', '.join(STATUSES)}")
    publish_at = c.when(data, "publish_at", required=True)
    updated_at = c.when(data, "updated_at", required=False)
    reviewed_by = c.text(data, "reviewed_by", required=False, limit=MAX_FIELD)
    reviewed_on = c.day(data, "reviewed_on", required=False)
    author = c.text(data, "author", required=False)
    link = c.url(data["link"], "link") if data.get("link") not in (None, "") else None
    # Where a linked item comes from, as readers see it: "From the National Cancer Institute".
    origin = c.text(data, "origin", required=False, limit=MAX_ORIGIN, plain=True)
    if origin and not data.get("link"):
        c.add("origin", "names where a linked item comes from; add the original's address as 'link: …'")

    topics: list[str] = []
    raw_topics = data.get("topics")
    if raw_topics is None or raw_topics == []:
        c.add("topics", "is required; list one or more topic ids from content/topics.yaml")
    elif not isinstance(raw_topics, list):
        c.add("topics", "must be a list, e.g. [palliative-care, quality-of-life]")
    else:
        for i, t in enumerate(raw_topics):
            if not isinstance(t, str) or t not in topic_ids:
                c.add(f"topics[{i}]", f"{str(t)[:60]!r} is not a topic; use one of: {', '.join(sorted(topic_ids))}")
            elif t not in topics:
                topics.append(t)

    notes: list[str] = []
    raw_notes = data.get("content_notes")
    if raw_notes not in (None, []):
        if not isinstance(raw_notes, list) or not all(isinstance(n, str) and 0 < len(n) <= 60 and not _CONTROL_RE.search(n) for n in raw_notes):
            c.add("content_notes", "must be a list of short labels, e.g. [end-of-life]")
        else:
            notes = [n.strip() for n in raw_notes]

    sources: list[Source] = []
    raw_sources = data.get("sources")
    if raw_sources not in (None, []):
        if not isinstance(raw_sources, list):
            c.add("sources", "must be a list of {title, url}")
        else:
            for i, s in enumerate(raw_sources[:50]):
                if not isinstance(s, dict):
                    c.add(f"sources[{i}]", "must have a title and a url")
                    continue
                s_title = c.text(s, "title", required=False)
                if s_title is None:
                    c.add(f"sources[{i}].title", "is required: name the page and its publisher")
                s_url = c.url(s.get("url"), f"sources[{i}].url")
                if s_title and s_url:
                    sources.append(Source(title=s_title, url=s_url))

    if status == "approved":
        reported = {p.field for p in c.problems}
        if not reviewed_by and "reviewed_by" not in reported:
            c.add("reviewed_by", "an approved article needs a named medical reviewer")
        if not reviewed_on and "reviewed_on" not in reported:
            c.add("reviewed_on", "an approved article needs the date of its medical review")
        if not sources and not c.failed:
            c.add("sources", "an approved article needs at least one source: cite the public pages behind it")

    body = doc.body
    if status in ("approved", "review", "draft") and not c.failed:
        found = placeholder_problems({"summary": summary or "", "body": body,
                                      "sources": [{"title": s.title, "url": s.url} for s in sources]})
        if found:
            field = {"source": "sources"}.get(found[0].split(" ", 1)[0], found[0].split(" ", 1)[0])
            what = "; ".join(found)
            if status == "approved":
                c.add(field, f"still holds the template's placeholder {what}; write the real text before approval")
            else:
                c.add(field, f"still holds the template's placeholder {what}; replace it before review",
                      severity="warning", line=doc.body_line if field == "body" else None)
    if _CONTROL_RE.search(body.replace("\t", "")):
        c.add("body", "contains control characters; remove them", line=doc.body_line)
    if len(body) > MAX_BODY:
        c.add("body", f"is {len(body)} characters; keep it under {MAX_BODY}", line=doc.body_line)
    if c.failed:
        return None, c.problems
    assert title and summary and status and publish_at
    article = Article(slug=slug, title=title, summary=summary, topics=tuple(topics), status=status,
                      publish_at=publish_at, sources=tuple(sources), reviewed_by=reviewed_by,
                      reviewed_on=reviewed_on, updated_at=updated_at, author=author, link=link, origin=origin,
                      content_notes=tuple(notes), body=body.strip("\n"), path=path)
    return article, c.problems


def load_library(content_dir: Path) -> tuple[Library, list[Problem]]:
    """Load every article; a broken file is reported and skipped, the rest still load."""
    content_dir = Path(content_dir)
    topics, problems = load_topics(content_dir / "topics.yaml")
    ids = frozenset(t.id for t in topics)
    articles: list[Article] = []
    for path in sorted(content_dir.glob("*.md")):
        shown = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem(path=shown, line=1, field="file", message=f"is not UTF-8 text ({exc.reason}); save it as UTF-8"))
            continue
        if path.name.lower() == "readme.md":
            continue
        article, found = parse_article(text, slug=path.stem, path=shown, topic_ids=ids)
        problems.extend(found)
        if article is not None:
            articles.append(article)
    return Library(topics=topics, articles=tuple(articles)), problems
