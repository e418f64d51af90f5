"""The HTML of an issue as a subscriber would get it, with example links: nothing planned, nothing sent."""

from __future__ import annotations

from datetime import datetime

from pipeline.content.model import Library
from pipeline.digests.message import example_substitutions
from pipeline.digests.plan import PlanEntry, generic_variant, plan_issue
from pipeline.digests.render import DigestRenderer
from pipeline.errors import InputError
from pipeline.schedules import Schedule
from pipeline.settings import Settings


def preview_digest(name: str, *, at: datetime, settings: Settings, library: Library, schedule: Schedule,
                   topics: tuple[str, ...] | None = None) -> str:
    """The HTML a subscriber with ``topics`` would get (no topics given: everything in the issue), with example
    links in place of personal ones. Raises InputError when that issue would be empty."""
    digest = schedule.digest(name)
    job = schedule.job_for_digest(name)
    if topics:
        unknown = [t for t in topics if t not in library.topic_ids]
        if unknown:
            raise InputError(f"--topics: unknown topic ids {', '.join(unknown)}; known: {', '.join(library.topic_ids)}")
        plan = plan_issue(library, digest, job, at=at, subscribers=[PlanEntry(0, tuple(topics))])
        variant = plan.variants.get(plan.assignments.get(0, ""))
    else:
        plan = plan_issue(library, digest, job, at=at, subscribers=[])
        variant = generic_variant(plan)
    if variant is None:
        raise InputError(f"the {name} issue of {plan.fire_at.isoformat()} has no articles"
                         + (f" for topics {';'.join(topics)}" if topics else "") + "; nobody would get an email")
    html = DigestRenderer(settings, library, digest).render(plan, variant).html
    for placeholder, value in example_substitutions(settings).items():
        html = html.replace(placeholder, value)
    return html
