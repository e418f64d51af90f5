"""Render a digest variant once: Jinja2 (HTML autoescaped, plus plain text), CSS inlined once.

Per-recipient parts are placeholders (``-unsubscribe_url-``, ``-preferences_url-``) that survive CSS inlining
and autoescaping unchanged and that SendGrid ``substitutions`` or ``pipeline.delivery.mime`` fill in per recipient.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parseaddr
from pathlib import Path

import css_inline
import jinja2

from pipeline.content.checks import next_review_due
from pipeline.content.model import Article, Library
from pipeline.delivery.backend import RenderedVariant
from pipeline.digests.plan import IssuePlan, Variant
from pipeline.errors import ConfigError
from pipeline.schedules import Digest
from pipeline.settings import Settings

UNSUBSCRIBE = "-unsubscribe_url-"
PREFERENCES = "-preferences_url-"
PLACEHOLDERS = (UNSUBSCRIBE, PREFERENCES)
MAX_SOURCES = 2
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
# How a content note reads in "this item is about …"; other notes read as written, hyphens as spaces.
NOTE_PHRASES = {
    "end-of-life": "end-of-life care",
    "death": "death and dying",
    "dying": "death and dying",
    "grief": "grief and loss",
    "hospice": "hospice care",
    "prognosis": "prognosis and life expectancy",
}
STANDING_NOTE = ("This digest is for learning and support. It does not replace advice from your own care team. "
                 "If anything here raises a question for you, please bring it to them.")
_URL_UNSAFE = re.compile(r"[\s\"'<>&\\]")


def date_label(day: date | datetime) -> str:
    """23 November 2026: the same in every locale."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def note_phrase(note: str) -> str:
    return NOTE_PHRASES.get(note.lower(), note.replace("-", " "))


def review_line(a: Article) -> str:
    """"Reviewed by NAME, CREDENTIALS on DATE", then when the next review is (or was) due."""
    if not a.reviewed_on:
        return f"Reviewed by {a.reviewed_by}." if a.reviewed_by else ""
    line = f"Reviewed by {a.reviewed_by} on {date_label(a.reviewed_on)}." if a.reviewed_by else \
        f"Reviewed on {date_label(a.reviewed_on)}."
    due = date_label(next_review_due(a.reviewed_on))
    return line + (f" Its next review was due on {due}." if a.review_overdue else f" Next review due {due}.")


def count_words(n: int) -> str:
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    number = words[n] if n < len(words) else str(n)
    return f"{number} new article" + ("" if n == 1 else "s")


def substitutions_for(*, unsubscribe_url: str, preferences_url: str) -> dict[str, str]:
    """The values for one recipient's placeholders. URLs go into href attributes and text unescaped,
    so they must not contain characters that HTML would need to escape."""
    for url in (unsubscribe_url, preferences_url):
        if _URL_UNSAFE.search(url):
            raise ValueError(f"link {url!r} contains a character that is not safe in an email link")
    return {UNSUBSCRIBE: unsubscribe_url, PREFERENCES: preferences_url}


def _wrap(text: str, width: int = 72) -> str:
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


def make_environment(templates_dir: Path) -> jinja2.Environment:
    """HTML templates (``*.html.j2``) autoescape; text templates do not."""
    templates_dir = Path(templates_dir)
    if not (templates_dir / "email").is_dir():
        raise ConfigError(f"PIPELINE_TEMPLATES_DIR: {templates_dir}/email not found; point it at the project's templates/")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=lambda name: bool(name) and name.endswith((".html.j2", ".html")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = _wrap
    return env


@dataclass(frozen=True, kw_only=True)
class ArticleView:
    title: str
    url: str
    summary: str
    topic_label: str
    notes: tuple[str, ...]
    review_line: str
    sources: tuple[dict, ...]
    link: str | None = None  # the original, for an item from an outside source
    origin: str | None = None


class DigestRenderer:
    """Renders the variants of one digest. Build once per run; the Jinja environment and inliner are reused."""

    def __init__(self, settings: Settings, library: Library, digest: Digest, *, env: jinja2.Environment | None = None):
        self.settings = settings
        self.library = library
        self.digest = digest
        self.site_url = settings.site_url.rstrip("/")
        self.env = env or make_environment(settings.templates_dir)
        self.html_template = self.env.get_template("email/digest.html.j2")
        self.text_template = self.env.get_template("email/digest.txt.j2")
        self.inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False, minify_css=True)
        self.brand = parseaddr(settings.sender)[0] or "MBC Digest"

    def article_view(self, a: Article) -> ArticleView:
        topics = []
        for t in a.topics:
            try:
                topics.append(self.library.topic(t).title)
            except KeyError:
                continue
        return ArticleView(
            title=a.title,
            url=f"{self.site_url}/articles/{a.slug}.html",
            summary=a.summary,
            topic_label=" · ".join(topics),
            notes=tuple(note_phrase(n) for n in a.content_notes),
            review_line=review_line(a),
            sources=tuple({"title": s.title, "url": s.url} for s in a.sources[:MAX_SOURCES]),
            link=a.link,
            origin=a.origin,
        )

    def subject(self, plan: IssuePlan) -> str:
        return f"{self.digest.title} ({date_label(plan.fire_at)})"

    def context(self, plan: IssuePlan, articles: tuple[Article, ...], *, web: bool) -> dict:
        views = [self.article_view(a) for a in articles]
        n = len(views)
        preheader = views[0].title if n == 1 else f"{views[0].title}, and {n - 1} more" if n else ""
        return {
            "title": self.subject(plan),
            "brand": self.brand,
            "digest_title": self.digest.title,
            "cadence": self.digest.cadence,
            "date_label": date_label(plan.fire_at),
            "preheader": preheader,
            "intro": (f"Hello. Here {'is' if n == 1 else 'are'} {count_words(n)} from us, chosen for the topics "
                      f"you follow. Read {'it' if n == 1 else 'them'} whenever you feel ready."),
            "standing_note": STANDING_NOTE,
            "articles": views,
            "web": web,
            "unsubscribe_url": UNSUBSCRIBE,
            "preferences_url": PREFERENCES,
            "subscribe_url": f"{self.site_url}/subscribe",
            "postal_address": self.settings.postal_address,
        }

    def render(self, plan: IssuePlan, variant: Variant, *, web: bool = False) -> RenderedVariant:
        """One variant as HTML (CSS inlined) and text. ``web`` renders the public copy, without personal links."""
        ctx = self.context(plan, variant.articles, web=web)
        html = self.inliner.inline(self.html_template.render(ctx))
        text = self.text_template.render(ctx)
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
        used = tuple(p for p in PLACEHOLDERS if p in html or p in text)
        return RenderedVariant(key=variant.key, subject=ctx["title"], html=html, text=text, placeholders=used)
