"""Import subscribers from CSV into the store: good rows land, bad rows are reported, re-import updates.

Consent survives a round trip: a row the file marks unsubscribed, never confirmed or suppressed is left alone
(a suppression is kept), and nobody who unsubscribed or was suppressed here is revived. The report counts each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from pipeline.errors import InputError, Problem
from pipeline.subscribers import repository
from pipeline.subscribers.csvio import parse_rows

CHUNK = 1000


@dataclass(frozen=True, kw_only=True)
class ImportReport:
    created: int
    updated: int
    problems: tuple[Problem, ...]
    # Why rows were left alone -> how many: "unsubscribed", "suppressed", "never confirmed".
    left_alone: dict[str, int] = field(default_factory=dict)

    def left_alone_line(self) -> str:
        if not self.left_alone:
            return "left alone 0 rows"
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.left_alone.items()))
        return f"left alone {sum(self.left_alone.values())} rows ({reasons})"


def import_csv(engine: Engine, path: Path, *, topic_ids: frozenset[str], at: datetime, consented: bool,
               address_problem: Callable[[str], str | None] = lambda _email: None) -> ImportReport:
    """``consented`` means the operator holds the consent: rows become confirmed, source 'import'.

    Without it rows stay pending until the person confirms (the confirmation email comes with the web flow).
    ``address_problem`` says why the delivery backend can never send to an address: such a row is imported
    (another backend may reach it) with a warning.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: is not UTF-8 text; save the CSV as UTF-8") from None
    rows, problems = parse_rows(text, path=str(path), topic_ids=topic_ids)
    created = updated = 0
    left: Counter[str] = Counter()
    for start in range(0, len(rows), CHUNK):
        # Each chunk commits on its own, so a failure later never loses rows already stored.
        with engine.begin() as conn:
            for row in rows[start:start + CHUNK]:
                if row.suppression:
                    # Kept, so that moving the list to another instance keeps the address silent.
                    repository.suppress(conn, email=row.email, reason=row.suppression, at=at, source="import",
                                        detail=f"{Path(path).name} line {row.line}")
                if row.suppression or repository.is_suppressed(conn, row.email):
                    left["suppressed"] += 1
                    problems.append(Problem(path=str(path), line=row.line, field="email",
                                            message="is on the suppression list and was not imported", severity="warning"))
                    continue
                existing = repository.get_by_email(conn, row.email)
                if row.status == "unsubscribed" or (existing is not None and existing.status == "unsubscribed"):
                    left["unsubscribed"] += 1
                    continue
                if row.status == "pending" and (existing is None or existing.status != "confirmed"):
                    # The file says this person never confirmed: --consented cannot vouch for them.
                    left["never confirmed"] += 1
                    continue
                if (why := address_problem(row.email)) is not None:
                    problems.append(Problem(path=str(path), line=row.line, field="email",
                                            message=f"imported, but {why}", severity="warning"))
                _, was_created = repository.upsert(
                    conn, email=row.email, name=row.name, topics=row.topics, cadence=row.cadence,
                    timezone=row.timezone, at=at,
                    status="confirmed" if consented and row.status != "pending" else None,
                    consent_source=(row.consent_source or "import") if consented else None,
                    consent_at=_when(row.consent_at) or at,
                )
                created += was_created
                updated += not was_created
    problems.sort(key=lambda p: p.line)
    return ImportReport(created=created, updated=updated, problems=tuple(problems), left_alone=dict(left))


def _when(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
