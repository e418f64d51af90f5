"""The operations that the CLI and the scheduler share, so a scheduled job runs exactly what a command runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.context import Context
from pipeline.feeds import BuildReport, build_site
from pipeline.fsio import write_atomic


@dataclass(frozen=True)
class Lines:
    lines: list[str]

    def summary(self) -> str:
        return "\n".join(self.lines)


def build_feeds(ctx: Context, *, at: datetime) -> BuildReport:
    s = ctx.settings
    return build_site(ctx.library(), at=at, public_dir=s.public_dir, site_url=s.site_url, templates_dir=s.templates_dir)


def send_digest(ctx: Context, name: str, *, at: datetime, dry_run: bool = False) -> Lines:
    """Send (or finish) the issue of ``name`` for ``at`` through PIPELINE_DELIVERY."""
    from pipeline.delivery.factory import make_backend
    from pipeline.digests.send import send_digest as send

    backend = make_backend(ctx.settings)
    try:
        report = send(name, at=at, settings=ctx.settings, engine=ctx.engine, library=ctx.library(),
                      schedule=ctx.schedule, backend=backend, dry_run=dry_run)
    finally:
        backend.close()
    return Lines(report.lines())


def preview_digest(ctx: Context, name: str, *, at: datetime, topics: tuple[str, ...], out: Path) -> str:
    from pipeline.digests.send import preview_digest as preview

    html = preview(name, at=at, settings=ctx.settings, library=ctx.library(), schedule=ctx.schedule,
                   topics=topics or None)
    write_atomic(out, html, skip_unchanged=False)
    return f"wrote {out}"
