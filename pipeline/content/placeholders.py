"""The template's placeholder texts (what `pipeline content new` writes), and placeholder reviewers and addresses.

Placeholders must never reach readers: an approved article holding one is refused, and so is its approval.
"""

from __future__ import annotations

SUMMARY = "One or two plain sentences, under 300 characters."
SOURCE_TITLE = "Name of the page, Publisher"
SOURCE_URL = "https://www.example.org/replace-with-the-source"
BODY_LINES = (
    "Write in short sentences and everyday words. Explain each medical term the first time you use it.",
    "End with a gentle reminder to talk with the care team where it fits.",
)
DEFAULT_POSTAL_MARK = "123 Example Street"


def placeholder_problems(fields: dict) -> list[str]:
    """Which reviewed fields still hold template text, in words (empty when none)."""
    found = []
    if fields.get("summary", "").strip() == SUMMARY:
        found.append(f"summary ({SUMMARY!r})")
    for s in fields.get("sources", ()):
        if s.get("url", "").strip() == SOURCE_URL or s.get("title", "").strip() == SOURCE_TITLE:
            found.append(f"source ({SOURCE_URL})")
            break
    body = fields.get("body", "")
    if any(line in body for line in BODY_LINES):
        found.append("body (the template's writing tips)")
    return found


def is_placeholder_reviewer(name: str | None) -> bool:
    text = (name or "").lower()
    return "placeholder" in text or text.startswith(("sample reviewer", "name, qualification"))


def is_default_postal_address(address: str) -> bool:
    return DEFAULT_POSTAL_MARK.lower() in address.lower()
