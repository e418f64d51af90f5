"""CSV rows under hypothesis: whatever a name or address holds, export is safe to open and import reads it back."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from pipeline.subscribers.csvio import (
    FORMULA_STARTS,
    ExportRow,
    format_rows,
    has_control_characters,
    parse_rows,
)

TOPICS = frozenset({"clinical-trials", "palliative-care"})
names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
locals_ = st.from_regex(r"[A-Za-z0-9=+@_-][A-Za-z0-9.=+_-]{0,20}", fullmatch=True).filter(
    lambda s: ".." not in s and not s.endswith(".") and "@" not in s[1:])


@given(name=names, local=locals_)
def test_export_cells_never_start_a_formula_and_clean_rows_round_trip(name, local):
    email = f"{local}@example.org".lstrip("@") if local.startswith("@") else f"{local}@example.org"
    text = "".join(format_rows([ExportRow(email=email, name=name, topics=("clinical-trials",), cadence="weekly",
                                          timezone="UTC", status="confirmed")]))
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)]
    assert not [c for c in cells if has_control_characters(c)]
    rows, problems = parse_rows(text, path="x.csv", topic_ids=TOPICS)
    if problems:  # only an address email_validator refuses, never a name
        assert all(p.field == "email" for p in problems), problems
        return
    [row] = rows
    if not has_control_characters(name) and len(name.strip()) <= 200:
        assert row.name == name.strip()
    assert row.status == "confirmed"


@given(st.lists(st.text(max_size=30), min_size=1, max_size=6), st.integers(min_value=1, max_value=5))
def test_any_csv_text_gives_rows_or_problems_never_an_exception(cells, repeat):
    line = ",".join(cells)
    text = "email,name,topics,cadence,timezone\n" + "\n".join([line] * repeat) + "\n"
    rows, problems = parse_rows(text, path="x.csv", topic_ids=TOPICS)
    for row in rows:
        assert not has_control_characters(row.name) and not has_control_characters(row.email)
    for p in problems:
        assert p.path == "x.csv" and p.line >= 1 and p.message
