"""Command groups that live beside `pipeline.cli`: each module holds one click group, registered in cli.py.

They share the root command's context through `current()`; cli.py imports them, never the other way round.
"""

from __future__ import annotations

import click

from pipeline.context import Context

AT_HELP = "The moment to act as if it were now (ISO 8601 with offset). Default: the current time."


def current() -> Context:
    """The Context the root `pipeline` command made for this invocation."""
    return click.get_current_context().find_object(Context)
