"""Pick the delivery backend named by PIPELINE_DELIVERY."""

from __future__ import annotations

from pipeline.delivery.backend import Backend
from pipeline.errors import ConfigError
from pipeline.settings import Settings


def make_backend(settings: Settings) -> Backend:
    if settings.delivery == "file":
        from pipeline.delivery.file import FileBackend

        return FileBackend(settings.outbox)
    if settings.delivery == "memory":
        from pipeline.delivery.memory import MemoryBackend

        return MemoryBackend()
    if settings.delivery in ("smtp", "sendgrid"):
        raise ConfigError(f"PIPELINE_DELIVERY: the {settings.delivery} backend is not available yet; "
                          "use PIPELINE_DELIVERY=file for now")
    raise ConfigError(f"PIPELINE_DELIVERY: unknown backend {settings.delivery!r}; use one of: file, smtp, sendgrid")
