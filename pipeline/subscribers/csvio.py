"""CSV import and export of subscribers: email,name,topics,cadence,timezone (topics separated by ';')."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from pipeline.errors import Problem
from pipeline.subscribers.model import CADENCES, Subscriber, join_topics, split_topics

COLUMNS = ("email", "name", "topics", "cadence", "timezone")
MAX_ROWS = 2_000_000


@dataclass(frozen=True, kw_only=True)
class Row:
    line: int
    email: str
    name: str
    topics: tuple[str, ...]
    cadence: str
    timezone: str


def check_email(address: str) -> str:
    """Normalised address, or ValueError with a readable reason. No DNS lookups."""
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def parse_rows(text: str, *, path: str, topic_ids: frozenset[str]) -> tuple[list[Row], list[Problem]]:
    """Parse CSV text. Good rows come back; each bad row becomes a Problem naming its line."""
    rows: list[Row] = []
    problems: list[Problem] = []

    def bad(line: int, field: str, message: str) -> None:
        problems.append(Problem(path=path, line=line, field=field, message=message))

    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("email",) if c not in header]
    if missing:
        bad(1, "header", f"needs the columns {','.join(COLUMNS)} (at least 'email'); found: {','.join(header) or 'nothing'}")
        return rows, problems
    reader.fieldnames = header
    seen: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if len(rows) + len(problems) >= MAX_ROWS:
            bad(line, "file", f"has more than {MAX_ROWS} rows; split it into smaller files")
            break
        if None in record:
            bad(line, "row", "has more fields than the header; quote values that contain commas")
            continue
        raw = {k: (v or "").strip() for k, v in record.items()}
        if not any(raw.values()):
            continue
        try:
            email = check_email(raw.get("email", ""))
        except ValueError as exc:
            bad(line, "email", f"{raw.get('email', '')[:80]!r} is not a valid address: {exc}")
            continue
        if email.lower() in seen:
            bad(line, "email", f"repeats line {seen[email.lower()]}; keep one row per address")
            continue
        topics = split_topics(raw.get("topics"))
        unknown = [t for t in topics if t not in topic_ids]
        if unknown:
            bad(line, "topics", f"unknown topic ids {', '.join(unknown)}; use ids from content/topics.yaml separated by ';'")
            continue
        cadence = (raw.get("cadence") or "weekly").lower()
        if cadence not in CADENCES:
            bad(line, "cadence", f"{cadence!r} is not a cadence; use weekly or monthly")
            continue
        tz = raw.get("timezone") or "UTC"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            bad(line, "timezone", f"{tz!r} is not a time zone; use an IANA name such as America/Chicago")
            continue
        name = raw.get("name", "")
        if len(name) > 200:
            bad(line, "name", "is longer than 200 characters")
            continue
        seen[email.lower()] = line
        rows.append(Row(line=line, email=email, name=name, topics=topics, cadence=cadence, timezone=tz))
    return rows, problems


def format_rows(subscribers: Iterable[Subscriber]) -> Iterable[str]:
    """CSV lines (header first) with the same columns the importer reads."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    yield buf.getvalue()
    for s in subscribers:
        buf.seek(0)
        buf.truncate()
        writer.writerow([s.email, s.name, join_topics(s.topics), s.cadence, s.timezone])
        yield buf.getvalue()
