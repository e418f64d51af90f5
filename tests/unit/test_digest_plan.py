from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.content.model import Article, Source
from pipeline.digests.plan import generic_variant, issue_period, plan_by_topics, plan_issue, variant_key
from pipeline.subscribers.model import Subscriber, join_topics

AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday; the weekly job fired at 08:00 New York = 13:00Z
FIRE = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
START = datetime(2026, 11, 16, 13, 0, tzinfo=UTC)


def sub(sid: int, *topics: str) -> Subscriber:
    return Subscriber(id=sid, email=f"s{sid}@example.org", name="", topics=tuple(topics), cadence="weekly",
                      timezone="UTC", status="confirmed")


def slugs(plan, sid):
    return [a.slug for a in plan.variants[plan.assignments[sid]].articles]


@pytest.fixture
def weekly(digest_schedule):
    return digest_schedule.digest("weekly"), digest_schedule.job_for_digest("weekly")


def test_period_is_previous_fire_to_fire(weekly):
    _, job = weekly
    assert issue_period(job, at=AT) == (START, FIRE)
    assert issue_period(job, at=FIRE) == (START, FIRE)  # at the fire time itself: that issue
    assert issue_period(job, at=FIRE - timedelta(seconds=1)) == (START - timedelta(days=7), START)


def test_end_inclusive_start_exclusive(digest_library, weekly):
    digest, job = weekly
    plan = plan_issue(digest_library, digest, job, at=AT, subscribers=[])
    got = [a.slug for a in plan.articles]
    assert "trial-finder-basics" in got  # published exactly at the fire time
    assert "last-week-news" not in got  # published exactly at the start: the previous issue's
    assert "next-issue-item" not in got  # one minute after the fire time
    assert "not-yet-approved" not in got
    previous = plan_issue(digest_library, digest, job, at=START, subscribers=[])
    assert [a.slug for a in previous.articles] == ["last-week-news"]
    following = plan_issue(digest_library, digest, job, at=FIRE + timedelta(days=7), subscribers=[])
    assert [a.slug for a in following.articles] == ["next-issue-item"]


@pytest.mark.parametrize(("at", "start", "end"), [
    # Clocks go back on Sunday 1 November 2026: 08:00 is 12:00Z before and 13:00Z after.
    (datetime(2026, 11, 2, 13, 0, tzinfo=UTC), datetime(2026, 10, 26, 12, 0, tzinfo=UTC), datetime(2026, 11, 2, 13, 0, tzinfo=UTC)),
    # Clocks go forward on Sunday 8 March 2026.
    (datetime(2026, 3, 9, 12, 30, tzinfo=UTC), datetime(2026, 3, 2, 13, 0, tzinfo=UTC), datetime(2026, 3, 9, 12, 0, tzinfo=UTC)),
])
def test_period_across_dst(weekly, at, start, end):
    _, job = weekly
    got_start, got_end = issue_period(job, at=at)
    assert (got_start, got_end) == (start, end)
    assert got_end.astimezone(job.tz).hour == 8 and got_start.astimezone(job.tz).hour == 8


def test_dst_week_includes_the_extra_hour(digest_library, weekly):
    digest, job = weekly
    base = digest_library.articles[0]
    early = base.evolve(slug="just-after-start", publish_at=datetime(2026, 10, 26, 12, 30, tzinfo=UTC))
    library = digest_library.__class__(topics=digest_library.topics, articles=(early,))
    plan = plan_issue(library, digest, job, at=datetime(2026, 11, 2, 13, 0, tzinfo=UTC), subscribers=[sub(1)])
    assert [a.slug for a in plan.articles] == ["just-after-start"]


def test_variants_group_subscribers_with_the_same_articles(digest_library, weekly):
    digest, job = weekly
    defaults = digest_library.default_topic_ids
    subscribers = [sub(1), sub(2, *defaults), sub(3, "clinical-trials"), sub(4, "clinical-trials", "treatment-progress"),
                   sub(5, "treatment-progress"), sub(6)]
    plan = plan_issue(digest_library, digest, job, at=AT, subscribers=subscribers)
    a = plan.assignments
    assert a[1] == a[2] == a[6]  # no choice means the default topics
    assert a[3] == a[4]  # different topics, same articles: one variant
    assert a[1] != a[3]
    assert 5 not in a and plan.skipped_empty == 1  # nothing for treatment-progress this week
    assert len(plan.variants) == 2
    assert slugs(plan, 3) == ["trial-finder-basics"]
    assert slugs(plan, 1) == ["trial-finder-basics", "palliative-care-early", "pain-and-tiredness"]


def test_sensitive_topics_only_when_chosen(digest_library, weekly):
    digest, job = weekly
    plan = plan_issue(digest_library, digest, job, at=AT,
                      subscribers=[sub(1), sub(2, "hospice-end-of-life"), sub(3, "palliative-care")])
    assert "talking-about-hospice" not in slugs(plan, 1)
    assert slugs(plan, 2) == ["talking-about-hospice"]
    assert "talking-about-hospice" not in slugs(plan, 3)


def test_article_with_a_sensitive_topic_needs_that_choice(digest_library, weekly):
    digest, job = weekly
    mixed = Article(slug="mixed", title="T", summary="S", topics=("palliative-care", "hospice-end-of-life"),
                    status="approved", publish_at=FIRE - timedelta(days=1), sources=(Source(title="x", url="https://example.org"),),
                    reviewed_by="Dr Example")
    library = digest_library.__class__(topics=digest_library.topics, articles=(mixed,))
    plan = plan_issue(library, digest, job, at=AT,
                      subscribers=[sub(1), sub(2, "palliative-care"), sub(3, "palliative-care", "hospice-end-of-life")])
    assert set(plan.assignments) == {3}
    assert plan.skipped_empty == 2


def test_digest_topics_restrict(digest_library, digest_schedule):
    digest, job = digest_schedule.digest("care"), digest_schedule.job_for_digest("care")
    plan = plan_issue(digest_library, digest, job, at=AT,
                      subscribers=[sub(1), sub(2, "clinical-trials"), sub(3, "quality-of-life"), sub(4, "palliative-care")])
    assert slugs(plan, 1) == ["palliative-care-early", "pain-and-tiredness"]
    assert 2 not in plan.assignments
    # The article is also about quality of life, but this digest does not cover that topic: the subscriber's
    # topics and the digest's topics must meet.
    assert 3 not in plan.assignments
    assert slugs(plan, 4) == ["palliative-care-early"]


def test_empty_issue_has_no_recipients(digest_library, weekly):
    digest, job = weekly
    plan = plan_issue(digest_library, digest, job, at=AT + timedelta(days=14), subscribers=[sub(1), sub(2)])
    assert plan.assignments == {} and plan.variants == {} and plan.skipped_empty == 2
    assert generic_variant(plan) is None


def test_plan_is_pure_and_keys_are_stable(digest_library, weekly):
    digest, job = weekly
    subscribers = [sub(i, *(["hospice-end-of-life"] if i % 3 == 0 else [])) for i in range(1, 20)]
    first = plan_issue(digest_library, digest, job, at=AT, subscribers=subscribers)
    again = plan_issue(digest_library, digest, job, at=AT, subscribers=reversed(subscribers))
    assert first == again
    variant = first.variants[first.assignments[1]]
    assert variant.key == variant_key("weekly", variant.articles)
    assert variant_key("monthly", variant.articles) != variant.key
    assert len(variant.key) == 16


def test_unknown_topics_are_ignored(digest_library, weekly):
    digest, job = weekly
    plan = plan_issue(digest_library, digest, job, at=AT, subscribers=[sub(1, "no-such-topic"), sub(2)])
    assert plan.assignments[1] == plan.assignments[2]  # treated as having chosen nothing


def test_planning_by_topic_counts_gives_what_planning_each_subscriber_gives(digest_library, weekly):
    digest, job = weekly
    choices = [(), tuple(digest_library.default_topic_ids), ("clinical-trials",),
               ("clinical-trials", "treatment-progress"), ("treatment-progress",), ("hospice-end-of-life",)]
    counts = [(join_topics(c), n) for c, n in zip(choices, (7, 3, 5, 2, 4, 1), strict=True)]
    people, sid = [], 0
    for stored, n in counts:
        for _ in range(n):
            sid += 1
            people.append(sub(sid, *[t for t in stored.split(";") if t]))
    each = plan_issue(digest_library, digest, job, at=AT, subscribers=people)
    by_topics = plan_by_topics(digest_library, digest, job, at=AT, topic_counts=counts)
    assert by_topics.plan.variants == each.variants
    assert by_topics.plan.assignments == {}
    assert by_topics.plan.skipped_empty == each.skipped_empty == 4  # the four with treatment-progress alone
    assert by_topics.recipients == len(each.assignments) == 18
    per_variant: dict[str, int] = {}
    for person in people:
        if person.id in each.assignments:
            key = each.assignments[person.id]
            assert by_topics.variant_of[join_topics(person.topics)] == key
            per_variant[key] = per_variant.get(key, 0) + 1
    assert by_topics.per_variant == per_variant
    assert join_topics(("treatment-progress",)) not in by_topics.variant_of
