"""A throwaway project for delivery tests and benchmarks: the real topics, one approved article per topic in
the week of the weekly issue at ``AT``, and the repository's schedules.yaml."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # just after the weekly fire of Monday 2026-11-23 08:00 New York
TOPICS = ("treatment-progress", "clinical-trials", "symptom-management", "quality-of-life", "palliative-care",
          "hospice-end-of-life", "support-resources")


def topic_combos(n: int = 30) -> list[str]:
    combos = [()] + [c for k in (1, 2, 3) for c in combinations(TOPICS, k)]
    rng = random.Random(7)
    rng.shuffle(combos)
    return [";".join(c) for c in combos[:n]]


def make_project(workdir: Path) -> Path:
    """A content dir with the real topics and one approved article per topic in the benchmark's week."""
    content = workdir / "content"
    content.mkdir(parents=True)
    shutil.copy(ROOT / "content" / "topics.yaml", content / "topics.yaml")
    for i, topic in enumerate(TOPICS):
        write_article(content, f"bench-{topic}", title=f"Benchmark article about {topic.replace('-', ' ')}",
                      summary=f"A short plain summary for the benchmark, number {i}.", topic=topic,
                      publish_at=(AT - timedelta(days=1, hours=i)).isoformat(), source=f"https://example.org/source-{i}")
    shutil.copy(ROOT / "schedules.yaml", workdir / "schedules.yaml")
    return workdir


BODY = """This is a short article. It has a few sentences. Each one is plain.

## What to know

Talk with your care team about what matters to you.
"""


def write_article(content: Path, slug: str, *, title: str, summary: str, topic: str, publish_at: str, source: str,
                  body: str = BODY) -> Path:
    """One approved article with a front-matter review."""
    path = content / f"{slug}.md"
    path.write_text(f"""---
title: "{title}"
summary: "{summary}"
topics: [{topic}]
status: approved
publish_at: {publish_at}
reviewed_by: "Sample Reviewer, MD"
reviewed_on: 2026-11-01
sources:
  - title: "Example source"
    url: "{source}"
---

{body}""", encoding="utf-8")
    return path
