"""Import subscribers from CSV into the store: good rows land, bad rows are reported, re-import updates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    for start in range(0, len(rows), CHUNK):
        # Each chunk commits on its own, so a failure later never loses rows already stored.
        with engine.begin() as conn:
            for row in rows[start:start + CHUNK]:
                if repository.is_suppressed(conn, row.email):
                    problems.append(Problem(path=str(path), line=row.line, field="email",
                                            message="is on the suppression list and was not imported", severity="warning"))
                    continue
                if (why := address_problem(row.email)) is not None:
                    problems.append(Problem(path=str(path), line=row.line, field="email",
                                            message=f"imported, but {why}", severity="warning"))
                _, was_created = repository.upsert(
                    conn, email=row.email, name=row.name, topics=row.topics, cadence=row.cadence,
                    timezone=row.timezone, at=at,
                    status="confirmed" if consented else None,
                    consent_source="import" if consented else None,
                )
                created += was_created
                updated += not was_created
    problems.sort(key=lambda p: p.line)
    return ImportReport(created=created, updated=updated, problems=tuple(problems))
