"""The operations that the CLI and the scheduler share, so a scheduled job runs exactly what a command runs."""

from __future__ import annotations

from datetime import datetime

from pipeline.context import Context
from pipeline.feeds import BuildReport, build_site


def build_feeds(ctx: Context, *, at: datetime) -> BuildReport:
    s = ctx.settings
    return build_site(ctx.library(), at=at, public_dir=s.public_dir, site_url=s.site_url, templates_dir=s.templates_dir)
