"""What a send did (or, on a dry run, would do), for the CLI and the scheduler's log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

MAX_REASON_LINES = 10


@dataclass(frozen=True, kw_only=True)
class SendReport:
    digest: str
    fire_at: datetime
    period_start: datetime
    period_end: datetime
    dry_run: bool
    issue_id: int | None = None
    created: bool = False  # this run planned the issue
    recipients: int = 0  # fixed in the ledger (dry run: who would be)
    variants: int = 0
    articles: int = 0
    sent_now: int = 0
    already_sent: int = 0
    skipped_empty: int = 0  # eligible, but nothing in this issue for their topics
    suppressed: int = 0  # dropped since planning (all runs)
    failed: int = 0
    unknown: int = 0
    possible_duplicates: int = 0
    recovered: int = 0
    complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # pending after this run: a later run sends them
    elsewhere: int = 0  # in flight with another sender when this run ended (it finishes them)
    reasons: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # ledger.reasons
    halted: str | None = None  # why this run stopped early (the relay stayed away, or a setting is wrong)
    setup_error: bool = False  # the halt names a setting to fix
    # deliver_at: local: pending waves (due time, recipients) still to come, and those whose grace had passed at
    # ``at`` (this run skipped them; ``digest send NAME --at DUE`` sends one)
    waves_to_come: tuple[tuple[datetime, int], ...] = ()
    waves_skipped: tuple[tuple[datetime, int], ...] = ()

    @property
    def not_yet_due(self) -> int:
        return sum(n for _due, n in self.waves_to_come)

    def skipped_commands(self) -> list[str]:
        return [f"pipeline digest send {self.digest} --at {due.isoformat()}" for due, _n in self.waves_skipped]

    @property
    def ok(self) -> bool:
        """Finished for everyone: each recipient sent, dropped, or failed for a reason of their own."""
        return self.dry_run or ((self.complete or self.waiting <= self.not_yet_due) and not self.unknown
                                and self.halted is None)

    def problems(self) -> list[str]:
        """Why the run did not finish the issue, for stderr (empty when ``ok``)."""
        if self.ok:
            return []
        n = self.waiting
        people = f"{n} recipient{'s are' if n != 1 else ' is'} waiting"
        if self.halted is not None and self.setup_error:
            return [self.halted, f"Nobody was marked failed; {people}; fix the setting and run the send again."]
        if self.halted is not None:
            return [f"{self.halted}; {people}; the next run will send them."]
        if self.waves_skipped:
            return [f"Skipped {n} recipient{'s' if n != 1 else ''} due at {due.isoformat()}: that wave's grace had "
                    f"passed. To send it anyway: {cmd}" for (due, n), cmd in zip(self.waves_skipped,
                                                                                  self.skipped_commands(), strict=True)]
        if self.waiting:
            return [f"The issue is not complete: {people}; run the send again to finish it."]
        return [f"{self.unknown} recipient{'s have' if self.unknown != 1 else ' has'} an unknown outcome (the "
                "provider may or may not have taken them); a re-run does not send to them again: check the "
                "provider's activity log."]

    def lines(self) -> list[str]:
        """Human summary, one fact a line, for the CLI."""
        head = "Dry run: nothing sent, nothing recorded." if self.dry_run else f"Issue {self.issue_id}" + (
            " planned now." if self.created else " already planned; finishing it.")
        out = [
            f"Digest {self.digest}: issue of {self.fire_at.isoformat()} covering "
            f"{self.period_start.isoformat()} (exclusive) to {self.period_end.isoformat()} (inclusive).",
            head,
            f"Articles in the period: {self.articles}; variants: {self.variants}; recipients: {self.recipients}; "
            f"nothing to send (empty for their topics): {self.skipped_empty}.",
        ]
        if not self.dry_run:
            out.append(f"Sent now: {self.sent_now}; sent before: {self.already_sent}; dropped since planning: "
                       f"{self.suppressed}; failed: {self.failed}; unknown: {self.unknown}; waiting: {self.waiting}.")
            out += reason_lines(self.reasons)
            for due, n in self.waves_to_come:
                out.append(f"Wave still to come: {n} at {due.isoformat()}.")
            if self.possible_duplicates:
                out.append(f"Possible duplicates (in flight during a crash, sent again): {self.possible_duplicates}.")
            if self.ok and not self.complete and self.elsewhere:
                out.append(f"This run is done; {self.elsewhere} are being sent by another sender right now "
                           "(`digest status` shows when the issue is complete).")
            elif self.ok and not self.complete and self.not_yet_due:
                out.append("The issue stays open until its last wave is sent.")
            elif self.ok and not self.complete:
                out.append(f"The issue stays open: its period ends at {self.period_end.isoformat()}, and only a run "
                           "after then completes it.")
            elif self.ok:
                out.append("The issue is complete.")
            elif self.complete:
                out.append("Nobody is waiting, but the issue is not complete: some outcomes are unknown.")
            elif self.waves_skipped:
                out.append(f"The issue is not complete: {self.waiting} waiting, of whom "
                           f"{sum(n for _due, n in self.waves_skipped)} in waves past their grace (see below).")
            else:
                out.append(f"The issue is not complete: {self.waiting} waiting; run again to finish it.")
        return out


def reason_lines(reasons: dict[str, list[tuple[str, int]]]) -> list[str]:
    """ "1 failed: 550 5.1.1 user unknown", one line per reason and state, most common first."""
    out: list[str] = []
    for state in ("failed", "unknown", "waiting", "in flight"):
        found = reasons.get(state, [])
        for reason, n in found[:MAX_REASON_LINES]:
            out.append(f"{n} {state}: {reason}")
        if len(found) > MAX_REASON_LINES:
            rest = sum(n for _reason, n in found[MAX_REASON_LINES:])
            out.append(f"{rest} {state} for {len(found) - MAX_REASON_LINES} other reasons")
    return out
