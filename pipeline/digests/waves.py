"""When each recipient of a ``deliver_at: local`` issue is due: ``local_time`` in their own zone on the issue's
local date. Pure: no I/O and no clock.

A local time that a daylight-saving change skips goes out at the first minute after the gap (03:00 for 02:30 in a
02:00-03:00 gap); one that happens twice goes out once, at its first occurrence. A recipient with no zone, or one
that is not a zone, is due in the schedule's zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_or(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """The recipient's zone, or ``fallback`` when it is empty or not an IANA zone name."""
    if not name or not isinstance(name, str) or len(name) > 64:
        return fallback
    return _zone(name) or fallback


def local_date(fire: datetime, schedule_zone: ZoneInfo) -> date:
    """The issue's local date: its fire time's date in the schedule's zone."""
    return fire.astimezone(schedule_zone).date()


def due_at(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant when the wall clock in ``zone`` first shows ``at`` on ``day``, or, if that wall time does
    not exist that day, the first instant after the gap."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # fold=0: the earlier of a repeated hour
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the change, fold=1 with the one after; the
    # change itself lies between the two instants. Find it to the second.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = int(min(other, first).timestamp()), int(max(other, first).timestamp())
    after = datetime.fromtimestamp(hi, UTC).astimezone(zone).utcoffset()
    while hi - lo > 1:  # the first second on the far side of the change
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)

def waves(recipients: Iterable[tuple[int, str | None]], *, day: date, at: time,
          fallback: ZoneInfo) -> dict[datetime, list[int]]:
    """Recipients (id, zone as stored) grouped by when they are due, earliest wave first."""
    by_zone: dict[str | None, list[int]] = {}
    for sid, name in recipients:
        by_zone.setdefault(name, []).append(sid)
    out: dict[datetime, list[int]] = {}
    for name, ids in by_zone.items():
        out.setdefault(due_at(day, at, zone_or(name, fallback)), []).extend(ids)
    return {when: sorted(out[when]) for when in sorted(out)}


EARLIEST = timezone(timedelta(hours=14))  # no zone on earth is further ahead (Pacific/Kiritimati)


def opens_at(fire: datetime, *, at: time, schedule_zone: ZoneInfo) -> datetime:
    """When the issue of ``fire`` opens: ``at`` on its local date where the day comes first (UTC+14). Its content
    is fixed then, and its period ends there, whatever zones its recipients are in."""
    return datetime.combine(local_date(fire, schedule_zone), at, tzinfo=EARLIEST).astimezone(UTC)


def local_issue(previous_fire: Callable[[datetime], datetime], fire_before: Callable[[datetime], datetime], *,
                when: datetime, at: time, schedule_zone: ZoneInfo) -> tuple[datetime, datetime, datetime]:
    """(period start, fire time, period end) of the latest issue opened at or before ``when``: its period runs
    from the previous issue's opening to its own, so each article is in exactly one issue."""
    # An issue opens less than three days before its fire time (local date in UTC+14 versus the schedule's zone).
    fire = previous_fire(when + timedelta(days=3))
    while opens_at(fire, at=at, schedule_zone=schedule_zone) > when:
        fire = fire_before(fire)
    start = opens_at(fire_before(fire), at=at, schedule_zone=schedule_zone)
    return start, fire, opens_at(fire, at=at, schedule_zone=schedule_zone)
