from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.schedules import Job, load_schedule, parse_duration
from pipeline.scheduling.runner import trigger_for

NY = ZoneInfo("America/New_York")


def job(cron: str, tz: str = "America/New_York") -> Job:
    return Job(id="j", task="send-digest", cron=cron, timezone=tz, misfire_grace=timedelta(hours=6), digest="weekly")


@pytest.mark.parametrize(("at", "expected"), [
    (datetime(2026, 11, 23, 8, 0, tzinfo=NY), datetime(2026, 11, 23, 8, 0, tzinfo=NY)),  # at a fire time: inclusive
    (datetime(2026, 11, 23, 7, 59, 59, tzinfo=NY), datetime(2026, 11, 16, 8, 0, tzinfo=NY)),
    (datetime(2026, 11, 25, 12, 0, tzinfo=UTC), datetime(2026, 11, 23, 8, 0, tzinfo=NY)),
    (datetime(2026, 3, 9, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 8, 0, tzinfo=NY)),  # the Monday after DST starts
])
def test_previous_fire_is_the_latest_at_or_before(at, expected):
    assert job("0 8 * * mon").previous_fire(at) == expected


def test_period_spans_a_dst_change_by_wall_clock():
    weekly = job("0 8 * * mon")
    fire = weekly.previous_fire(datetime(2026, 3, 9, 12, 0, tzinfo=UTC))
    before = weekly.fire_before(fire)
    assert before == datetime(2026, 3, 2, 8, 0, tzinfo=NY)
    assert fire.astimezone(UTC) - before.astimezone(UTC) == timedelta(days=7) - timedelta(hours=1)


def test_numeric_days_of_week_mean_what_cron_means():
    assert job("0 8 * * 1").dow_names_cron() == "0 8 * * mon"
    assert job("0 8 * * 0,6").dow_names_cron() == "0 8 * * sun,sat"
    assert job("0 8 * * 1-5").dow_names_cron() == "0 8 * * mon-fri"


@settings(max_examples=60, deadline=None)
@given(
    cron=st.sampled_from(["0 8 * * mon", "0 8 * * 1", "30 6 * * 0", "0 9 1 * *", "*/15 * * * *", "0 7 * * 1-5",
                          "0 12 15 * *", "45 23 * * sat", "0 0 * * 7"]),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(NY)),
)
@example(cron="*/15 * * * *", start=datetime(2026, 3, 8, 2, 0, tzinfo=NY, fold=1))  # the case issue 11 found
@example(cron="*/15 * * * *", start=datetime(2026, 11, 1, 1, 30, tzinfo=NY, fold=1))  # the autumn overlap
def test_apscheduler_trigger_agrees_with_planning(cron, start):
    """The runner's trigger fires exactly at the times the planner uses to define issues.

    ``start`` may be a wall time no clock shows (02:30 on the spring-forward night, fold 0 or 1). The scheduler
    only ever asks with a real instant (its clock's now), and APScheduler reads the wall clock of what it is
    given, so it is asked with the instant (in UTC). Compared as instants: two datetimes in one zone compare by
    wall clock alone in Python, which is how 01:15 EST looked earlier than the 02:00 (fold=1, 01:00 EST) it follows.
    """
    j = job(cron)
    trigger = trigger_for(j)
    ours = j.next_fire(start)
    theirs = trigger.get_next_fire_time(None, start.astimezone(UTC) + timedelta(microseconds=1))
    assert theirs.astimezone(UTC) == ours.astimezone(UTC)


@settings(max_examples=200, deadline=None)
@given(
    cron=st.sampled_from(["0 8 * * mon", "*/15 * * * *", "30 1 * * *", "0 2 * * *", "30 2 * * sun", "0 9 1 * *"]),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(NY)),
)
def test_planning_brackets_any_instant_even_in_a_dst_gap_or_overlap(cron, start):
    j = job(cron)
    instant = start.astimezone(UTC)
    before, after = j.previous_fire(start), j.next_fire(start)
    assert before.astimezone(UTC) <= instant < after.astimezone(UTC)
    assert j.fire_before(before).astimezone(UTC) < before.astimezone(UTC)


@pytest.mark.parametrize("fold", [0, 1])
def test_the_spring_forward_gap_is_read_as_the_instant_it_means(fold):
    quarter = job("*/15 * * * *")
    start = datetime(2026, 3, 8, 2, 0, tzinfo=NY, fold=fold)  # no clock in New York shows this time
    instant = start.astimezone(UTC)
    assert instant == datetime(2026, 3, 8, 7 - fold, 0, tzinfo=UTC)
    assert quarter.previous_fire(start).astimezone(UTC) == instant
    assert quarter.next_fire(start).astimezone(UTC) == instant + timedelta(minutes=15)


SCHEDULE = """timezone: America/New_York
digests:
  weekly: {title: "Weekly", cadence: weekly, topics: all}
  bad: {title: "Bad", cadence: daily, topics: all}
jobs:
  - {id: feeds, task: build-feeds, cron: "*/15 * * * *"}
  - {id: weekly-digest, task: send-digest, digest: weekly, cron: "0 8 * * mon", misfire_grace: 6h}
  - {id: broken, task: send-digest, digest: weekly, cron: "0 8 * *"}
  - {id: orphan, task: send-digest, digest: nope, cron: "0 8 * * mon"}
  - {id: late, task: build-feeds, cron: "0 * * * *", misfire_grace: soon}
"""


def test_schedule_problems_name_line_and_field(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text(SCHEDULE)
    schedule, problems = load_schedule(path)
    assert schedule is None
    found = {(p.line, p.field) for p in problems}
    assert found == {(4, "digests.bad.cadence"), (8, "jobs.broken.cron"), (9, "jobs.orphan.digest"),
                     (10, "jobs.late.misfire_grace")}


def test_repository_schedule_is_valid():
    from pathlib import Path

    schedule, problems = load_schedule(Path(__file__).resolve().parents[2] / "schedules.yaml")
    assert problems == []
    assert set(schedule.digests) == {"weekly", "monthly"}
    assert schedule.job_for_digest("weekly").misfire_grace == timedelta(hours=6)


def test_durations():
    assert parse_duration("6h") == timedelta(hours=6)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration(30) == timedelta(seconds=30)
    with pytest.raises(ValueError):
        parse_duration("six hours")


DIGEST_SETTINGS = """timezone: America/New_York
digests:
  typo: {title: "T", cadence: weekly, topics: all, sendtime: "08:00"}
  vague:
    title: "V"
    cadence: weekly
    deliver_at: sometimes
  late: {title: "L", cadence: weekly, deliver_at: local, local_time: "25:00"}
  sexagesimal: {title: "S", cadence: weekly, deliver_at: local, local_time: 8:00}
  stray: {title: "S", cadence: weekly, local_time: "08:00"}
  plain: {title: "P", cadence: weekly, deliver_at: schedule}
jobs:
  - {id: t, task: send-digest, digest: typo, cron: "0 8 * * mon"}
"""


def test_unknown_digest_keys_and_bad_delivery_values_are_refused_by_line_and_field(tmp_path):
    """Each named once, where it is; the job sending a refused digest is not blamed for it."""
    path = tmp_path / "schedules.yaml"
    path.write_text(DIGEST_SETTINGS)
    schedule, problems = load_schedule(path)
    assert schedule is None
    found = {(p.line, p.field): p.message for p in problems}
    assert set(found) == {(3, "digests.typo.sendtime"), (7, "digests.vague.deliver_at"), (8, "digests.late.local_time"),
                          (9, "digests.sexagesimal.local_time"), (10, "digests.stray.local_time")}
    assert "'sometimes' is not a choice" in found[(7, "digests.vague.deliver_at")]
    assert "'25:00' is not a time of day" in found[(8, "digests.late.local_time")]
    assert 'in quotes' in found[(9, "digests.sexagesimal.local_time")]
    assert str(problems[0]).startswith(f"{path}:3: digests.typo.sendtime: ")


def test_deliver_at_defaults_to_the_schedule_and_local_is_accepted_with_a_local_time(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text('timezone: UTC\ndigests:\n  w: {title: "W", cadence: weekly}\njobs: []\n')
    schedule, problems = load_schedule(path)
    assert problems == [] and schedule.digests["w"].deliver_at == "schedule"
    path.write_text('timezone: UTC\ndigests:\n  w: {title: "W", cadence: weekly, deliver_at: local, local_time: "08:00"}\n'
                    'jobs: []\n')
    schedule, problems = load_schedule(path)
    assert problems == [] and schedule.digests["w"].deliver_at == "local"
    assert schedule.digests["w"].local_time.isoformat() == "08:00:00"


def test_a_local_digests_job_needs_a_grace_of_at_least_one_wave_interval(tmp_path):
    path = tmp_path / "schedules.yaml"
    digest = 'timezone: UTC\ndigests:\n  w: {title: "W", cadence: weekly, deliver_at: local, local_time: "08:00"}\n'
    path.write_text(digest + 'jobs:\n  - {id: w-job, task: send-digest, digest: w, cron: "0 8 * * mon"}\n')
    schedule, problems = load_schedule(path)
    assert schedule is None
    assert [(p.line, p.field) for p in problems] == [(5, "jobs.w-job.misfire_grace")]
    assert "too short for a digest sent in local-time waves" in problems[0].message
    path.write_text(digest + 'jobs:\n  - {id: w-job, task: send-digest, digest: w, cron: "0 8 * * mon", '
                    'misfire_grace: 15m}\n')
    assert load_schedule(path)[1] == []
