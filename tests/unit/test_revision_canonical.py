"""One revision per reviewed text: YAML formatting, line endings and trailing whitespace do not matter; a change
to any reviewed field does, and a change to publish_at, status or the review fields does not."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.content.loader import parse_article
from pipeline.editorial.canonical import apply, revision_of

TOPICS = frozenset({"symptom-management", "palliative-care", "quality-of-life"})
_YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off"}  # plain scalars that are not strings
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).filter(lambda w: w not in _YAML_WORDS)
_words = st.lists(_word, min_size=1, max_size=6).map(" ".join)
_body = st.lists(_words, min_size=1, max_size=5).map("\n\n".join)
_topics = st.lists(st.sampled_from(sorted(TOPICS)), min_size=1, max_size=3, unique=True)
_sources = st.lists(st.tuples(_words, _word), min_size=1, max_size=3)


@st.composite
def articles(draw):
    return {"title": draw(_words), "summary": draw(_words), "body": draw(_body), "topics": draw(_topics),
            "sources": [{"title": t, "url": f"https://example.org/{u}"} for t, u in draw(_sources)],
            "link": draw(st.one_of(st.none(), _word.map(lambda w: f"https://example.net/{w}"))),
            "content_notes": draw(st.lists(st.sampled_from(["end-of-life", "grief"]), max_size=2, unique=True))}


@st.composite
def styles(draw):
    return {"quote": draw(st.sampled_from(['"', "'", ""])), "flow": draw(st.booleans()),
            "order": draw(st.permutations(["title", "summary", "topics", "status", "publish_at", "sources",
                                           "reviewed_by", "reviewed_on", "link", "content_notes"])),
            "crlf": draw(st.booleans()), "trailing": draw(st.sampled_from(["", " ", "  \t"])),
            "blank_lines": draw(st.integers(0, 3)), "indent": draw(st.sampled_from([2, 4]))}


def render(a: dict, style: dict, *, status: str = "approved", publish_at: str = "2026-11-02T09:00:00-05:00",
           reviewed_on: str = "2026-10-30") -> str:
    q = style["quote"]
    pad = " " * style["indent"]

    def scalar(v: str) -> str:
        return json.dumps(v) if q == '"' else (f"'{v}'" if q == "'" else v)

    def lst(items: list[str]) -> str:
        if style["flow"] or not items:
            return "[" + ", ".join(items) + "]"
        return "\n" + "\n".join(f"{pad}- {i}" for i in items)

    fields = {
        "title": scalar(a["title"]), "summary": scalar(a["summary"]), "topics": lst(a["topics"]),
        "status": status, "publish_at": publish_at, "reviewed_by": scalar("Dr Ada Example, MD"),
        "reviewed_on": reviewed_on, "link": scalar(a["link"]) if a["link"] else "",
        "content_notes": lst(a["content_notes"]),
        "sources": "\n" + "\n".join(f"{pad}- title: {scalar(s['title'])}\n{pad}  url: {s['url']}" for s in a["sources"]),
    }
    lines = ["---", *(f"{k}: {fields[k]}".rstrip() + style["trailing"] for k in style["order"]), "---"]
    body = "\n".join(line + style["trailing"] for line in a["body"].split("\n"))
    text = "\n".join(lines) + "\n" * (1 + style["blank_lines"]) + body + "\n" * (1 + style["blank_lines"])
    return text.replace("\n", "\r\n") if style["crlf"] else text


def parsed(text: str):
    article, problems = parse_article(text, slug="an-article", path="content/an-article.md", topic_ids=TOPICS)
    assert article is not None, problems
    return article


@settings(max_examples=150, deadline=None)
@given(articles(), styles(), styles())
def test_formatting_alone_never_makes_a_new_revision(a, one, two):
    assert revision_of(parsed(render(a, one))).hash == revision_of(parsed(render(a, two))).hash


@settings(max_examples=60, deadline=None)
@given(articles(), styles())
def test_publish_time_status_and_review_fields_are_not_reviewed_text(a, style):
    base = revision_of(parsed(render(a, style))).hash
    assert revision_of(parsed(render(a, style, status="review", publish_at="2027-01-01T08:00:00+00:00",
                                     reviewed_on="2026-11-20"))).hash == base


@settings(max_examples=150, deadline=None)
@given(articles(), styles(), st.sampled_from(["title", "summary", "body", "topics", "sources", "link",
                                              "content_notes"]), _word)
def test_any_change_to_a_reviewed_field_makes_a_new_revision(a, style, field, extra):
    changed = json.loads(json.dumps(a))
    if field in ("title", "summary"):
        changed[field] += " " + extra
    elif field == "body":
        changed["body"] += "\n\n" + extra
    elif field == "topics":
        changed["topics"] = [t for t in sorted(TOPICS) if t not in a["topics"]][:1] or a["topics"][:-1] or ["quality-of-life"]
        if changed["topics"] == a["topics"]:
            changed["topics"] = list(reversed(sorted(TOPICS)))
    elif field == "sources":
        changed["sources"] = [*a["sources"], {"title": extra, "url": f"https://example.org/more/{extra}"}]
    elif field == "link":
        changed["link"] = None if a["link"] else f"https://example.net/{extra}"
    else:
        changed["content_notes"] = [] if a["content_notes"] else ["end-of-life"]
    assert changed != a
    assert revision_of(parsed(render(changed, style))).hash != revision_of(parsed(render(a, style))).hash


@settings(max_examples=60, deadline=None)
@given(articles(), styles())
def test_a_stored_revision_reads_back_as_the_same_text(a, style):
    article = parsed(render(a, style))
    rev = revision_of(article)
    restored = apply(article.evolve(title="", summary="", body="", topics=(), sources=()), rev.text)
    assert revision_of(restored) == rev
    lines = article.body.replace("\r\n", "\n").split("\n")
    assert restored.body == "\n".join(line.rstrip() for line in lines).strip("\n")


def test_the_origin_of_a_linked_item_is_reviewed_text_and_survives_the_stored_revision():
    a = {"title": "new option", "summary": "plain words", "body": "some text", "topics": ["palliative-care"],
         "sources": [{"title": "original", "url": "https://example.org/original"}],
         "link": "https://example.org/original", "content_notes": []}
    style = {"quote": '"', "flow": True, "order": ["title", "summary", "topics", "status", "publish_at", "sources",
                                                    "reviewed_by", "reviewed_on", "link", "content_notes"],
             "crlf": False, "trailing": "", "blank_lines": 0, "indent": 2}
    plain = render(a, style)
    with_origin = plain.replace('link: "https://example.org/original"',
                                'link: "https://example.org/original"\norigin: "the National Cancer Institute"')
    other_origin = with_origin.replace("the National Cancer Institute", "the FDA")
    first, second, third = (revision_of(parsed(t)) for t in (plain, with_origin, other_origin))
    assert len({first.hash, second.hash, third.hash}) == 3
    assert "origin" not in json.loads(first.text)  # texts recorded before the field existed keep their hash
    restored = apply(parsed(plain), second.text)
    assert restored.origin == "the National Cancer Institute"
