"""The public web copy of each issue, under {public_dir}/digests/, and an index of them. Atomic writes.

The copy holds every article of the issue (what a reader of all topics would get) and no personal links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipeline.atomic_files import write_atomic
from pipeline.digests.message import example_substitutions
from pipeline.digests.plan import IssuePlan, generic_variant
from pipeline.digests.render import DigestRenderer, date_label
from pipeline.schedules import Schedule
from pipeline.settings import Settings

_ISSUE_FILE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.html$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True, kw_only=True)
class ArchivedIssue:
    file: str
    day: date
    label: str


def issue_path(public_dir: Path, digest: str, fire_day: date) -> Path:
    if not _NAME.match(digest):
        raise ValueError(f"digest name {digest!r} cannot be used in a file name")
    return Path(public_dir) / "digests" / digest / f"{fire_day.isoformat()}.html"


def write_issue(plan: IssuePlan, renderer: DigestRenderer, settings: Settings, schedule: Schedule | None = None) -> Path | None:
    """Write the web copy of this issue (nothing for an empty one) and refresh the index."""
    variant = generic_variant(plan)
    if variant is None:
        return None
    html = renderer.render(plan, variant, web=True).html
    for placeholder, value in example_substitutions(settings).items():
        html = html.replace(placeholder, value)
    path = issue_path(settings.public_dir, plan.digest, plan.fire_at.date())
    write_atomic(path, html)
    write_index(settings, renderer, schedule)
    return path


def archived(public_dir: Path) -> dict[str, list[ArchivedIssue]]:
    """Digest name -> its archived issues, newest first, read from the files on disk."""
    root = Path(public_dir) / "digests"
    out: dict[str, list[ArchivedIssue]] = {}
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)):
        items = []
        for f in folder.iterdir():
            m = _ISSUE_FILE.match(f.name)
            if m:
                day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                items.append(ArchivedIssue(file=f.name, day=day, label=date_label(day)))
        if items:
            out[folder.name] = sorted(items, key=lambda i: i.day, reverse=True)
    return out


def write_index(settings: Settings, renderer: DigestRenderer, schedule: Schedule | None = None) -> Path:
    titles = {name: d.title for name, d in (schedule.digests.items() if schedule else ())}
    groups = [{"name": name, "title": titles.get(name, name), "issues": issues}
              for name, issues in archived(settings.public_dir).items()]
    html = renderer.env.get_template("web/digest_index.html.j2").render(
        groups=groups, brand=renderer.brand, subscribe_url=f"{renderer.site_url}/subscribe")
    path = Path(settings.public_dir) / "digests" / "index.html"
    write_atomic(path, html)
    return path
