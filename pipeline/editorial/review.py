"""A staff review of one revision: the reviewer proves who they are, then approves or asks for changes.

Every refusal is written to the audit log (in its own transaction, so it stays when the attempt fails).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from pipeline.content.placeholders import placeholder_problems
from pipeline.editorial import audit, record, staff
from pipeline.editorial.canonical import readable
from pipeline.errors import InputError, NotFound


class ReviewRefused(InputError):
    """The review was not recorded; the audit log says why."""


@dataclass(frozen=True, kw_only=True)
class Preview:
    slug: str
    revision: record.Stored
    last_approved: record.Stored | None
    diff: list[str]
    already_approved: bool


def preview(engine: Engine, slug: str, *, revision_hash: str, mode: str) -> Preview:
    """What a reviewer is about to sign: the revision, and its difference from the last approved one."""
    with engine.connect() as conn:
        target = record.revision(conn, slug, revision_hash)
        if target is None:
            raise NotFound(f"{slug}: no stored revision {revision_hash[:12]}; run 'pipeline content import' first")
        last = record.last_approval(conn, slug, mode)
        base = record.revision(conn, slug, last.revision) if last else None
        done = any(r.revision == target.hash and r.kind == "staff"
                   for r in record.approvals(record.reviews_of(conn, slug), mode))
    old = readable(base.text) if base else []
    diff = list(difflib.unified_diff(old, readable(target.text), lineterm="",
                                     fromfile=f"approved {base.hash[:12]}" if base else "nothing approved yet",
                                     tofile=f"revision {target.hash[:12]}"))
    return Preview(slug=slug, revision=target, last_approved=base, diff=diff, already_approved=done)


def _refusal(target: record.Stored, account: staff.Account, verdict: str) -> str | None:
    if account.disabled:
        return "the account is disabled"
    if account.role != "reviewer":
        return f"the account's role is {account.role}; only a reviewer account can review"
    if target.author == account.actor:
        return "this revision was written by the same account; another reviewer must review it"
    if verdict == "approved" and (found := placeholder_problems(target.fields)):
        return "it still holds the template's placeholder " + "; ".join(found)
    return None


def _target(conn, slug: str, revision_hash: str) -> record.Stored:
    target = record.revision(conn, slug, revision_hash)
    if target is None:
        raise NotFound(f"{slug}: no stored revision {revision_hash[:12]}")
    return target


def _refused(conn, *, slug: str, target: record.Stored, actor: str, verdict: str, reason: str, at: datetime) -> None:
    audit.append(conn, "approval_refused", actor=actor, at=at, slug=slug, revision=target.hash,
                 verdict=verdict, reason=reason)


def decide(engine: Engine, *, slug: str, revision_hash: str, verdict: str, email: str, password: str,
           code: str | None, note: str, at: datetime) -> staff.Account:
    """Record ``verdict`` (approved | changes_requested) on exactly ``revision_hash`` by the reviewer ``email``.
    Raises ReviewRefused (logged as approval_refused) or NotFound."""
    if verdict not in ("approved", "changes_requested"):
        raise ValueError(verdict)
    with engine.begin() as conn:
        target = _target(conn, slug, revision_hash)
        try:
            account = staff.authenticate(conn, email, password, code=code, at=at)
        except staff.AuthError as exc:
            refused = (exc.account.actor if exc.account else "unknown", exc.reason)
        else:
            reason = _refusal(target, account, verdict)
            if reason is None:
                _record(conn, slug, target, account, verdict, note, at)
                return account
            refused = (account.actor, reason)
        _refused(conn, slug=slug, target=target, actor=refused[0], verdict=verdict, reason=refused[1], at=at)
    raise ReviewRefused(f"{slug}: not recorded: {refused[1]}")


def decide_as(engine: Engine, *, slug: str, revision_hash: str, verdict: str, staff_id: int, note: str,
              at: datetime) -> staff.Account:
    """Like ``decide`` for an account whose identity the caller has just proved (the workbench: a live session
    whose password was entered within the last minutes). The same rules, the same audit entries."""
    if verdict not in ("approved", "changes_requested"):
        raise ValueError(verdict)
    with engine.begin() as conn:
        target = _target(conn, slug, revision_hash)
        account = staff.by_id(conn, staff_id)
        if account is None:
            raise NotFound(f"staff:{staff_id}: no such account")
        reason = _refusal(target, account, verdict)
        if reason is None:
            _record(conn, slug, target, account, verdict, note, at)
            return account
        _refused(conn, slug=slug, target=target, actor=account.actor, verdict=verdict, reason=reason, at=at)
    raise ReviewRefused(f"{slug}: not recorded: {reason}")


def _record(conn, slug: str, target: record.Stored, account: staff.Account, verdict: str, note: str,
            at: datetime) -> None:
    record.add_review(conn, slug=slug, revision_hash=target.hash, verdict=verdict, kind="staff",
                      staff_id=account.id, reviewer=account.shown_as, reviewed_on=at.date(), at=at,
                      note=note, actor=account.actor)
