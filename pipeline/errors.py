"""One error tree. Every user-facing error says what is wrong and what to do.

    PipelineError
    ├── ConfigError        bad setting or schedules.yaml
    ├── ContentError       article or topics file problems (carries Problems)
    ├── InputError         bad CLI argument, CSV file or request
    ├── NotFound           unknown article, digest or subscriber
    ├── StoreError         database not migrated or unreachable
    └── DeliveryError      a backend refused a message
        ├── DeliveryUnknown  the outcome of a send is not known (e.g. a timeout)
        └── DeliveryHalted     nobody's own failure: the send stops, the rest wait
            ├── DeliverySetupError  a setting is wrong (TLS trust, login, API key): stop before marking anyone
            └── RelayUnavailable    the relay or API stayed away past PIPELINE_RELAY_PATIENCE: recipients wait
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One problem in one file, printed as ``path:line: field: message``."""

    path: str
    line: int
    field: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}: {self.field}: {prefix}{self.message}"


class PipelineError(Exception):
    """Base of every error the pipeline reports to a user."""

    def lines(self) -> list[str]:
        return [str(self)]


class ConfigError(PipelineError):
    pass


class InputError(PipelineError):
    pass


class NotFound(PipelineError):
    pass


class StoreError(PipelineError):
    pass


class ContentError(PipelineError):
    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class DeliveryError(PipelineError):
    pass


class DeliveryUnknown(DeliveryError):
    pass


class DeliveryHalted(DeliveryError):
    """A failure that is nobody's own: the send stops, and whoever it had not sent to waits for a later run.
    ``outcomes``: what the backend had decided for its batch before it stopped (the rest of the batch waits)."""

    def __init__(self, message: str, *, outcomes: tuple = ()):
        super().__init__(message)
        self.outcomes = tuple(outcomes)


class DeliverySetupError(DeliveryHalted):
    pass


class RelayUnavailable(DeliveryHalted):
    def __init__(self, message: str, *, where: str = "the relay", waited: float = 0.0, in_doubt: bool = False,
                 outcomes: tuple = ()):
        super().__init__(message, outcomes=outcomes)
        self.where = where
        self.waited = waited
        self.in_doubt = in_doubt  # the request in hand may have been taken: its recipients are unknown, not waiting
        self.retry_after: float | None = None  # seconds the server asked us to wait (429 Retry-After), if it said
