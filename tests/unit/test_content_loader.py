from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.content.loader import load_library, parse_article
from pipeline.content.model import Article

ROOT = Path(__file__).resolve().parents[2]
TOPICS = frozenset({"treatment-progress", "palliative-care", "hospice-end-of-life"})

GOOD = """---
title: "Palliative care is extra support"
summary: "Palliative care helps with comfort at any stage."
topics: [palliative-care]
status: approved
publish_at: 2026-11-02T09:00:00-05:00
reviewed_by: "Sample Reviewer, RN"
reviewed_on: 2026-10-20
sources:
  - title: "Palliative Care in Cancer, NCI"
    url: "https://www.example.org/palliative"
---
Palliative care is **extra** support.
"""


def parse(text: str, slug: str = "good-one"):
    return parse_article(text, slug=slug, path=f"content/{slug}.md", topic_ids=TOPICS)


def test_good_article_parses_to_values():
    article, problems = parse(GOOD)
    assert problems == []
    assert article.title == "Palliative care is extra support"
    assert article.publish_at == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    assert article.reviewed_on == date(2026, 10, 20)
    assert article.topics == ("palliative-care",)
    assert article.sources[0].url == "https://www.example.org/palliative"
    assert article.body == "Palliative care is **extra** support."


def test_live_and_queued_follow_publish_time():
    article, _ = parse(GOOD)
    assert article.is_live(datetime(2026, 11, 2, 14, 0, tzinfo=UTC))
    assert not article.is_live(datetime(2026, 11, 2, 13, 59, tzinfo=UTC))
    assert article.is_queued(datetime(2026, 11, 1, tzinfo=UTC))
    assert not article.evolve(status="draft").is_live(datetime(2027, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("old", "new", "field", "line"), [
    ("topics: [palliative-care]", "topics: [no-such-topic]", "topics[0]", 4),
    ("status: approved", "status: published", "status", 5),
    ("publish_at: 2026-11-02T09:00:00-05:00", "publish_at: 2026-11-02T09:00:00", "publish_at", 6),
    ("publish_at: 2026-11-02T09:00:00-05:00", "publish_at: next tuesday", "publish_at", 6),
    ('reviewed_by: "Sample Reviewer, RN"', "reviewed_by:", "reviewed_by", 7),
    ("reviewed_on: 2026-10-20", "reviewed_on: 20/10/2026", "reviewed_on", 8),
    ('    url: "https://www.example.org/palliative"', '    url: "javascript:alert(1)"', "sources[0].url", 9),
    ('summary: "Palliative care helps with comfort at any stage."', 'summary: "<b>bold</b> claim"', "summary", 3),
])
def test_each_problem_names_line_and_field(old, new, field, line):
    assert old in GOOD
    article, problems = parse(GOOD.replace(old, new))
    assert article is None
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.field, p.line) for p in errors] == [(field, line)]
    assert str(errors[0]).startswith(f"content/good-one.md:{line}: {field}: ")


def test_approved_article_needs_sources():
    text = GOOD.split("sources:")[0] + "---\nBody\n"
    article, problems = parse(text)
    assert article is None
    assert [p.field for p in problems] == ["sources"]


def test_draft_needs_no_review():
    text = GOOD.replace("status: approved", "status: draft").replace('reviewed_by: "Sample Reviewer, RN"\n', "")
    article, problems = parse(text)
    assert article is not None and article.status == "draft" and article.reviewed_by is None


def test_broken_yaml_points_at_the_line():
    article, problems = parse(GOOD.replace('title: "Palliative care is extra support"', 'title: "unclosed'))
    assert article is None
    assert problems[0].field == "front matter" and problems[0].line >= 2


def test_missing_front_matter():
    article, problems = parse("Just a body\n")
    assert article is None and problems[0].line == 1 and "---" in problems[0].message


def test_bad_slug_is_reported():
    article, problems = parse(GOOD, slug="Bad Name")
    assert article is None and problems[0].field == "slug"


def test_one_broken_file_does_not_stop_the_others(tmp_path):
    (tmp_path / "topics.yaml").write_text((ROOT / "content" / "topics.yaml").read_text())
    (tmp_path / "good-one.md").write_text(GOOD)
    (tmp_path / "broken.md").write_text(GOOD.replace("status: approved", "status: [1, 2]"))
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe\x00bad")
    library, problems = load_library(tmp_path)
    assert [a.slug for a in library.articles] == ["good-one"]
    assert {Path(p.path).name for p in problems if p.severity == "error"} == {"broken.md", "binary.md"}


def test_repository_content_is_valid():
    library, problems = load_library(ROOT / "content")
    assert [str(p) for p in problems if p.severity == "error"] == []
    assert len(library.articles) >= 14
    for topic in library.topics:
        assert sum(topic.id in a.topics for a in library.articles) >= 2, topic.id
    at = datetime(2026, 11, 25, tzinfo=UTC)
    states = {("live" if a.is_live(at) else "queued") if a.status == "approved" else a.status for a in library.articles}
    assert {"live", "queued", "draft"} <= states
    assert library.topic("hospice-end-of-life").sensitive
    assert "hospice-end-of-life" not in library.default_topic_ids


# Hostile front matter: whatever the loader is given, it returns an Article or a clear error, never raises.
_scalars = st.one_of(
    st.text(max_size=50), st.text(min_size=300, max_size=2000), st.integers(), st.floats(allow_nan=True),
    st.booleans(), st.none(), st.just("<script>alert(1)</script>"), st.just("\x00\x07\x1b"),
    st.just("2026-11-02T09:00:00-05:00"), st.just("approved"), st.just("palliative-care"),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                       max_leaves=12)
_fields = ["title", "summary", "topics", "status", "publish_at", "sources", "reviewed_by", "reviewed_on",
           "updated_at", "author", "link", "content_notes"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.sampled_from(_fields), _values, max_size=12),
       body=st.text(max_size=500))
def test_hostile_front_matter_never_crashes(data, body):
    try:
        fm = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return
    article, problems = parse(f"---\n{fm}---\n{body}")
    if article is None:
        assert any(p.severity == "error" for p in problems)
        for p in problems:
            assert p.path == "content/good-one.md" and p.line >= 1 and p.field and p.message
    else:
        assert isinstance(article, Article)
        assert article.status in ("draft", "review", "approved", "retracted")
        assert article.publish_at.tzinfo is not None
        assert len(article.summary) <= 300
        assert "<script" not in article.summary and "\x00" not in article.title


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400))
def test_arbitrary_text_never_crashes(text):
    article, problems = parse(text)
    assert article is not None or problems
