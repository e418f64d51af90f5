"""Promote a candidate: write content/SLUG.md as a draft that points to the original and cites it first.

Our title and summary are left empty for the editor to write in plain language; the outside title and summary
appear only in YAML comments, for reference, so nothing from outside reaches readers without being rewritten
and reviewed. `pipeline check` reports the empty fields until they are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import yaml

from pipeline.atomic_files import write_atomic
from pipeline.content.loader import SLUG_RE
from pipeline.curation.inbox import Candidate
from pipeline.curation.sources import WatchedSource
from pipeline.errors import InputError

BODY = """Write here, in short sentences and everyday words, what this news means for people living with MBC.
Explain each medical term the first time you use it. Say what is not yet known.

End with a gentle reminder to talk with the care team where it fits.
"""


def _quoted(value: str) -> str:
    """One YAML double-quoted scalar on one line, whatever the text holds."""
    return yaml.safe_dump(value, default_style='"', width=100_000, allow_unicode=True).strip().removesuffix("...").strip()


def _comment(label: str, text: str) -> str:
    return f"#   {label}: {' '.join(text.split()) or '(none)'}\n"


def draft_text(candidate: Candidate, *, origin: WatchedSource | None, topics: Sequence[str], at: datetime) -> str:
    origin_name = origin.origin_text if origin else ""
    source_title = origin.name if origin else "The original item"
    lines = [
        "---\n",
        f"# Promoted from the inbox (candidate {candidate.id}, from {', '.join(candidate.sources) or 'unknown'}).\n",
        "# Write our own title and summary in plain language. The outside text below is for reference only:\n",
        "# do not copy it. Then set status: review and ask a medical reviewer to read the article.\n",
        _comment("Outside title", candidate.title),
        _comment("Outside summary", candidate.summary),
        'title: ""\n',
        'summary: ""\n',
        f"topics: [{', '.join(topics)}]\n",
        "status: draft\n",
        f"publish_at: {at.replace(microsecond=0).isoformat()}\n",
        f"link: {_quoted(candidate.url)}\n",
    ]
    if origin_name:
        lines.append(f"origin: {_quoted(origin_name)}\n")
    lines += [
        "reviewed_by:\n",
        "reviewed_on:\n",
        "sources:\n",
        f"  - title: {_quoted(source_title)}\n",
        f"    url: {_quoted(candidate.url)}\n",
        "---\n",
        BODY,
    ]
    return "".join(lines)


def write_draft(content_dir: Path, candidate: Candidate, *, slug: str, sources: Sequence[WatchedSource],
                topics: Sequence[str] | None, at: datetime) -> Path:
    """Write the draft; refuses a bad or taken slug. ``topics``: default, the sources' topics."""
    if not SLUG_RE.match(slug) or len(slug) > 120:
        raise InputError(f"--slug: {slug!r} must be lowercase words joined by hyphens, such as new-drug-approved")
    path = Path(content_dir) / f"{slug}.md"
    if path.exists():
        raise InputError(f"{path}: already exists; choose another --slug")
    by_id = {s.id: s for s in sources}
    carried = [by_id[s] for s in candidate.sources if s in by_id]
    chosen = list(topics) if topics else list(dict.fromkeys(t for s in carried for t in s.topics))
    if not chosen:
        raise InputError("--topics: the sources of this candidate are no longer in sources.yaml; name the topics")
    write_atomic(path, draft_text(candidate, origin=carried[0] if carried else None, topics=chosen, at=at),
                 skip_unchanged=False)
    return path
