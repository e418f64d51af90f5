"""deliver_at: local, end to end on SQLite and PostgreSQL: a simulated day with the clock as a parameter, a send
every 15 minutes, recipients in six zones (one on a daylight-saving change) each getting one copy at their time."""

from __future__ import annotations

import itertools
import shutil
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select, update

from pipeline.content.loader import load_library
from pipeline.delivery.file import FileBackend
from pipeline.digests import waves
from pipeline.digests.send import send_digest
from pipeline.schedules import require_schedule
from pipeline.store.tables import deliveries, issues
from pipeline.store.tables import subscribers as t_sub

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# The issue of Sunday 1 November 2026, the night New York leaves daylight saving (06:00 UTC). The job fires at
# 08:00 New York time (13:00 UTC); the issue opens at 08:00 on 1 November in UTC+14 (18:00 UTC on 31 October).
NY = ZoneInfo("America/New_York")
OPENS = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)
ZONES = {  # zone -> when 08:00 local on 1 November is, in UTC
    "Pacific/Kiritimati": datetime(2026, 10, 31, 18, 0, tzinfo=UTC),
    "Australia/Sydney": datetime(2026, 10, 31, 21, 0, tzinfo=UTC),
    "Asia/Kathmandu": datetime(2026, 11, 1, 2, 15, tzinfo=UTC),
    "Europe/London": datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
    "America/New_York": datetime(2026, 11, 1, 13, 0, tzinfo=UTC),  # EST: the clocks went back at 06:00 UTC
    "Pacific/Honolulu": datetime(2026, 11, 1, 18, 0, tzinfo=UTC),
    "": datetime(2026, 11, 1, 13, 0, tzinfo=UTC),  # no zone: the schedule's (New York)
}
SCHEDULE = """timezone: America/New_York
digests:
  morning:
    title: "MBC Digest: this week"
    cadence: weekly
    topics: all
    deliver_at: local
    local_time: "08:00"
jobs:
  - {id: morning-digest, task: send-digest, digest: morning, cron: "0 8 * * sun", misfire_grace: 1h}
"""
ARTICLE = """---
title: {title}
summary: A short test item for the local-time digest.
topics: [treatment-progress]
status: approved
publish_at: {at}
sources:
  - {{title: "Example source", url: "https://journal.example.com/news"}}
reviewed_by: Dr Cy Example, oncologist
reviewed_on: 2026-10-20
---
Test text.
"""


@pytest.fixture
def world(tmp_path, engine, settings, add_subscriber):
    content = tmp_path / "content"
    shutil.copytree(FIXTURES / "digest_content", content)
    (content / "in-this-issue.md").write_text(ARTICLE.format(title="Waves item in this issue",
                                                             at="2026-10-28T12:00:00Z"))
    # Published after the first wave and before the job's fire time: the next issue's, not this one's.
    (content / "after-first-wave.md").write_text(ARTICLE.format(title="Waves item after the first wave",
                                                                at="2026-10-31T20:00:00Z"))
    for k in range(2, 60):  # something in each later weekly issue, for the property test's issues
        (content / f"later-{k}.md").write_text(ARTICLE.format(
            title=f"Waves item of week {k}", at=(OPENS + timedelta(weeks=k - 1, days=1)).isoformat()))
    library, problems = load_library(content)
    assert not [p for p in problems if p.severity == "error"], problems
    (tmp_path / "schedules.yaml").write_text(SCHEDULE)
    schedule = require_schedule(tmp_path / "schedules.yaml", topic_ids=frozenset(library.topic_ids))
    who: dict[str, datetime] = {}
    for i, (zone, due) in enumerate(sorted(ZONES.items())):
        for j in range(3):
            email = f"r{i}-{j}@example.org"
            sid = add_subscriber(email, topics=("treatment-progress",))
            with engine.begin() as conn:
                conn.execute(update(t_sub).where(t_sub.c.id == sid).values(timezone=zone))
            who[email] = due

    def send(at: datetime, **kw):
        return send_digest("morning", at=at, settings=settings, engine=engine, library=library, schedule=schedule,
                           backend=FileBackend(settings.outbox), clock=lambda: at, write_archive=False, **kw)

    return send, who


def received(settings) -> dict[str, list]:
    from email import policy
    from email.parser import BytesParser
    out: dict[str, list] = {}
    for p in sorted(Path(settings.outbox).glob("*.eml")):
        msg = BytesParser(policy=policy.default).parsebytes(p.read_bytes())
        out.setdefault(str(msg["To"]), []).append(msg)
    return out


def ledger_rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(deliveries.c.subscriber_id, deliveries.c.state, deliveries.c.due_at,
                                   deliveries.c.sent_at, t_sub.c.email).join(
            t_sub, t_sub.c.id == deliveries.c.subscriber_id)).all()


def test_a_day_of_waves_gives_each_recipient_one_copy_at_their_own_time(world, engine, settings):
    send, who = world
    reports = []
    at = OPENS - timedelta(minutes=15)
    while at <= OPENS + timedelta(hours=30):
        if at >= OPENS:  # before the issue opens, a send would look at last week's
            reports.append((at, send(at)))
        at += timedelta(minutes=15)
    got = received(settings)
    assert sorted(got) == sorted(who) and all(len(msgs) == 1 for msgs in got.values())
    for msgs in got.values():
        text = msgs[0].get_body(("plain",)).get_content()
        assert "Waves item in this issue" in text and "after the first wave" not in text
    rows = ledger_rows(engine)
    assert len(rows) == len(who)
    for row in rows:
        assert row.state == "sent" and row.due_at == who[row.email]
        assert row.due_at <= row.sent_at < row.due_at + timedelta(minutes=15)
    first = reports[0][1]
    assert first.created and first.period_end == OPENS and first.fire_at == datetime(2026, 11, 1, 13, tzinfo=UTC)
    assert first.sent_now == 3 and first.ok and not first.complete and first.not_yet_due == len(who) - 3
    # Open (and reported as waiting for its waves) until Honolulu's, the last: complete from then on.
    for at, report in reports:
        assert report.complete == (at >= ZONES["Pacific/Honolulu"]), at
        assert report.ok and not report.waves_skipped
    with engine.connect() as conn:
        assert conn.execute(select(issues.c.completed_at)).scalar_one() == ZONES["Pacific/Honolulu"]
    # The article after the first wave is the next issue's.
    nxt = send(datetime(2026, 11, 7, 18, 0, tzinfo=UTC), dry_run=True)
    assert nxt.period_start == OPENS and nxt.articles == 1


def test_a_wave_missed_in_downtime_is_sent_once_within_grace_and_skipped_with_the_command_after(world, engine,
                                                                                                  settings):
    send, who = world
    first = send(OPENS)  # Kiritimati's wave, on time
    assert first.sent_now == 3
    # Down from 18:15 until 22:30: Sydney's wave (21:00) is still within its hour of grace at 21:45 ...
    late = send(datetime(2026, 10, 31, 21, 45, tzinfo=UTC))
    assert late.sent_now == 3 and late.ok and not late.waves_skipped
    # ... and down again until 04:00: Kathmandu's (02:15) is past its grace and skipped, with the command.
    skipped = send(datetime(2026, 11, 1, 4, 0, tzinfo=UTC))
    assert skipped.sent_now == 0 and not skipped.ok
    assert skipped.waves_skipped == ((ZONES["Asia/Kathmandu"], 3),)
    problem = " ".join(skipped.problems())
    assert "pipeline digest send morning --at 2026-11-01T02:15:00+00:00" in problem
    again = send(datetime(2026, 11, 1, 4, 15, tzinfo=UTC))
    assert again.sent_now == 0 and again.waves_skipped == ((ZONES["Asia/Kathmandu"], 3),)
    # The command it printed sends that wave, once.
    rerun = send(ZONES["Asia/Kathmandu"])
    assert rerun.sent_now == 3 and not rerun.waves_skipped
    got = received(settings)
    assert sorted(len(v) for v in got.values()) == [1] * 9
    assert {e for e in got} == {e for e, due in who.items() if due <= ZONES["Asia/Kathmandu"]}


EXAMPLES = itertools.count(1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@given(zones=st.lists(st.sampled_from(sorted(ZONES) + ["Not/AZone", "Europe/Berlin", "America/Sao_Paulo",
                                                        "Australia/Lord_Howe"]), min_size=1, max_size=10))
@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_waves_of_an_issue_are_exactly_its_recipients(world, engine, add_subscriber, zones):
    send, _who = world
    k = next(EXAMPLES)
    for i, zone in enumerate(zones):
        sid = add_subscriber(f"h{k}-{i}@example.net", topics=("treatment-progress",))
        with engine.begin() as conn:
            conn.execute(update(t_sub).where(t_sub.c.id == sid).values(timezone=zone))
    report = send(OPENS + timedelta(weeks=k))  # a new issue each example, for everyone so far
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.subscriber_id, deliveries.c.due_at, t_sub.c.timezone).join(
            t_sub, t_sub.c.id == deliveries.c.subscriber_id).where(deliveries.c.issue_id == report.issue_id)).all()
        everyone = set(conn.execute(select(t_sub.c.id)).scalars())
    by_due: dict[datetime, set[int]] = {}
    for row in rows:
        by_due.setdefault(row.due_at, set()).add(row.subscriber_id)
    assert set().union(*by_due.values()) == everyone and sum(map(len, by_due.values())) == len(everyone)
    expected = waves.waves([(r.subscriber_id, r.timezone) for r in rows], day=waves.local_date(report.fire_at, NY),
                           at=time(8, 0), fallback=NY)
    assert {due: set(ids) for due, ids in expected.items()} == by_due
