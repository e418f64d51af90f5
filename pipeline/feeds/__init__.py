"""Feeds stage: RSS, Atom and JSON Feed for the site and each topic, and the pages they link to."""

from pipeline.feeds.site import BuildReport, build_site

__all__ = ["BuildReport", "build_site"]
