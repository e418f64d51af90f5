"""Due times of a deliver_at: local issue: local_time in each recipient's zone, the next valid minute across a
spring-forward gap, the first occurrence across a fall-back hour; every recipient in exactly one wave."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.digests.waves import due_at, local_date, waves, zone_or

ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
NY = ZoneInfo("America/New_York")


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(ZONES), day=st.dates(date(2000, 1, 1), date(2037, 12, 31)),
       at=st.times().map(lambda t: t.replace(second=0, microsecond=0)))
@example(zone="America/New_York", day=date(2026, 3, 8), at=time(2, 30))  # spring forward: 02:00-03:00 skipped
@example(zone="America/New_York", day=date(2026, 11, 1), at=time(1, 30))  # fall back: 01:00-02:00 twice
@example(zone="Pacific/Apia", day=date(2011, 12, 30), at=time(8, 0))  # a whole day skipped
@example(zone="Australia/Lord_Howe", day=date(2026, 10, 4), at=time(2, 15))  # a half-hour change
def test_due_time_is_local_time_or_the_first_minute_after_a_gap(zone, day, at):
    tz = ZoneInfo(zone)
    wall = datetime.combine(day, at)
    due = due_at(day, at, tz)
    assert due.tzinfo is not None and due.second == 0 and due.microsecond == 0
    shown = due.astimezone(tz).replace(tzinfo=None)
    if _exists(wall, tz):
        assert shown == wall
        # the first occurrence: fold=1 names the later one when the hour repeats
        assert due <= wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    else:
        assert shown > wall  # after the gap
        before = (due - timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None)
        assert before < wall  # one minute earlier is still before the gap: this is its first minute after


@settings(max_examples=200, deadline=None)
@given(recipients=st.lists(st.tuples(st.integers(1, 10**6),
                                     st.one_of(st.sampled_from(ZONES), st.sampled_from(["", "Mars/Olympus", "UTC"]),
                                               st.none())),
                           unique_by=lambda r: r[0], max_size=60),
       day=st.dates(date(2020, 1, 1), date(2030, 12, 31)))
def test_every_recipient_is_due_exactly_once_at_eight_local(recipients, day):
    got = waves(recipients, day=day, at=time(8, 0), fallback=NY)
    ids = [sid for wave in got.values() for sid in wave]
    assert sorted(ids) == sorted(sid for sid, _zone in recipients)  # nobody twice, nobody left out
    assert list(got) == sorted(got)
    zone_of = dict(recipients)
    for when, wave in got.items():
        for sid in wave:
            tz = zone_or(zone_of[sid], NY)
            assert when == due_at(day, time(8, 0), tz)
            assert when.astimezone(tz).strftime("%H:%M") >= "08:00"


def test_an_empty_or_unknown_zone_falls_back_to_the_schedules():
    assert zone_or("", NY) is NY and zone_or(None, NY) is NY and zone_or("Mars/Olympus", NY) is NY
    assert zone_or("../../etc/passwd", NY) is NY
    assert zone_or("Asia/Kathmandu", NY) == ZoneInfo("Asia/Kathmandu")


def test_the_first_wave_is_the_evening_before_for_utc_plus_14():
    fire = datetime(2026, 11, 23, 8, 0, tzinfo=NY)
    day = local_date(fire, NY)
    got = waves([(1, "Pacific/Kiritimati"), (2, "America/New_York"), (3, "Pacific/Honolulu"),
                 (4, "Asia/Kathmandu")], day=day, at=time(8, 0), fallback=NY)
    first = next(iter(got))
    assert got[first] == [1]
    assert first.astimezone(NY) == datetime(2026, 11, 22, 13, 0, tzinfo=NY)
    assert [w.astimezone(UTC).strftime("%d %H:%M") for w in got] == ["22 18:00", "23 02:15", "23 13:00", "23 18:00"]
