"""Editorial warnings: plain language and review freshness. Warnings never block publishing."""

from __future__ import annotations

from datetime import date, datetime

import textstat

from pipeline.content.model import Article
from pipeline.content.render import plain_text
from pipeline.errors import Problem

MAX_GRADE = 8.0
REVIEW_MAX_DAYS = 365


def grade(text: str) -> float:
    """US school grade by Flesch-Kincaid (textstat 0.7.8 works offline)."""
    return float(textstat.flesch_kincaid_grade(text)) if text.strip() else 0.0


def next_review_due(reviewed_on: date) -> date:
    try:
        return reviewed_on.replace(year=reviewed_on.year + 1)
    except ValueError:  # 29 February
        return reviewed_on.replace(year=reviewed_on.year + 1, day=28)


def editorial_warnings(article: Article, *, at: datetime, lines: dict[str, int] | None = None) -> list[Problem]:
    """``lines`` maps front-matter fields to their line numbers, so warnings point at the field."""
    out: list[Problem] = []
    lines = lines or {}

    def warn(field: str, message: str) -> None:
        line = lines.get(field, lines.get("_body", 1))
        out.append(Problem(path=article.path, line=line, field=field, message=message, severity="warning"))

    g = grade(article.summary)
    if g > MAX_GRADE:
        warn("summary", f"reads at US grade {g:.1f} (aim for {MAX_GRADE:.0f} or below); use shorter sentences and everyday words")
    g = grade(plain_text(article.body))
    if g > MAX_GRADE:
        warn("body", f"reads at US grade {g:.1f} (aim for {MAX_GRADE:.0f} or below); use shorter sentences and everyday words")
    if article.reviewed_on and article.status in ("approved", "review"):
        if next_review_due(article.reviewed_on) < at.date():
            warn("reviewed_on", f"the medical review of {article.reviewed_on.isoformat()} is over 12 months old; ask for a new review")
    return out
