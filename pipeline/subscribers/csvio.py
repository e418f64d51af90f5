"""CSV import and export of subscribers: email,name,topics,cadence,timezone (topics separated by ';'), and on export
the consent record too: status, consent_source, consent_at, suppression, suppression_source, suppressed_at.

A cell a spreadsheet would run as a formula (OWASP's CSV injection rule: it starts with = + - @ tab or carriage
return) is written with a leading apostrophe, which import takes off again. Control characters are refused on the
way in and written as visible escapes (\\u0007) on the way out.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from pipeline.errors import Problem
from pipeline.subscribers.model import CADENCES, join_topics, split_topics

COLUMNS = ("email", "name", "topics", "cadence", "timezone")
CONSENT_COLUMNS = ("status", "consent_source", "consent_at", "suppression", "suppression_source", "suppressed_at")
EXPORT_COLUMNS = COLUMNS + CONSENT_COLUMNS
MAX_ROWS = 2_000_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: never part of a name or an address.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def neutralise(value: str) -> str:
    """A cell safe to open in a spreadsheet: control characters escaped, a formula start quoted."""
    value = _CONTROL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def unneutralise(value: str) -> str:
    """What ``neutralise`` wrote, read back: the apostrophe before a formula start comes off."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


@dataclass(frozen=True, kw_only=True)
class ExportRow:
    """One line of an export: a subscriber (with any suppression of their address), or a suppressed address
    that has no subscriber."""

    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    cadence: str = ""
    timezone: str = ""
    status: str = ""
    consent_source: str = ""
    consent_at: str = ""
    suppression: str = ""
    suppression_source: str = ""
    suppressed_at: str = ""


@dataclass(frozen=True, kw_only=True)
class Row:
    line: int
    email: str
    name: str
    topics: tuple[str, ...]
    cadence: str
    timezone: str
    # From an export's consent columns; "" when the file has none (a plain list the operator vouches for).
    status: str = ""
    consent_source: str = ""
    consent_at: str = ""
    suppression: str = ""


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
        raw = {k: unneutralise((v or "").strip()) for k, v in record.items()}
        if not any(raw.values()):
            continue
        controlled = [k for k, v in raw.items() if has_control_characters(v)]
        if controlled:
            bad(line, controlled[0], "contains a control character (such as a line break or tab inside the value); "
                                     "remove it")
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
        status = raw.get("status", "").lower()
        if status not in ("", "pending", "confirmed", "unsubscribed"):
            bad(line, "status", f"{status!r} is not a status; use pending, confirmed or unsubscribed (or leave it empty)")
            continue
        seen[email.lower()] = line
        rows.append(Row(line=line, email=email, name=name, topics=topics, cadence=cadence, timezone=tz, status=status,
                        consent_source=raw.get("consent_source", "")[:40], consent_at=raw.get("consent_at", ""),
                        suppression=raw.get("suppression", "")[:40]))
    return rows, problems


def format_rows(rows: Iterable[ExportRow]) -> Iterable[str]:
    """CSV lines (header first): the import columns, then the consent record."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    yield buf.getvalue()
    for r in rows:
        buf.seek(0)
        buf.truncate()
        writer.writerow([neutralise(v) for v in (
            r.email, r.name, join_topics(r.topics), r.cadence, r.timezone, r.status, r.consent_source, r.consent_at,
            r.suppression, r.suppression_source, r.suppressed_at)])
        yield buf.getvalue()
