from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from pipeline.cli import cli
from pipeline.store.engine import make_engine
from pipeline.store.tables import subscribers

ROOT = Path(__file__).resolve().parents[2]

CSV = """email,name,topics,cadence,timezone
ann@example.org,Ann,palliative-care;quality-of-life,weekly,America/New_York
Bob@Example.com,Bob,,monthly,Europe/London
not-an-address,Nope,,weekly,UTC
cat@example.net,Cat,no-such-topic,weekly,UTC
dee@example.org,Dee,,fortnightly,UTC
eve@example.org,Eve,,weekly,Mars/Olympus
ANN@example.org,Ann again,,weekly,UTC
"""


@pytest.fixture
def project(tmp_path, monkeypatch, db_url):
    shutil.copytree(ROOT / "content", tmp_path / "content")
    shutil.copy(ROOT / "schedules.yaml", tmp_path / "schedules.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_DATABASE_URL", db_url)
    return tmp_path


def count(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(subscribers)).scalar_one()
    finally:
        engine.dispose()


def test_import_keeps_good_rows_and_reports_each_bad_one(project, db_url):
    (project / "people.csv").write_text(CSV)
    result = CliRunner().invoke(cli, ["subscribers", "import", "people.csv", "--consented"])
    assert result.exit_code == 1
    out = result.output
    assert "people.csv:4: email:" in out
    assert "people.csv:5: topics:" in out
    assert "people.csv:6: cadence:" in out
    assert "people.csv:7: timezone:" in out
    assert "people.csv:8: email: repeats line 2" in out
    assert "imported 2 new, updated 0, rejected 5 rows" in out
    assert count(db_url) == 2

    export = CliRunner().invoke(cli, ["subscribers", "export"])
    assert export.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(export.output)))
    assert [r["email"] for r in rows] == ["ann@example.org", "Bob@example.com"]
    assert rows[0]["topics"] == "palliative-care;quality-of-life"
    assert rows[1]["cadence"] == "monthly" and rows[1]["timezone"] == "Europe/London"


def test_reimport_updates_instead_of_duplicating(project, db_url):
    (project / "a.csv").write_text("email,name,topics,cadence,timezone\nann@example.org,Ann,,weekly,UTC\n")
    assert CliRunner().invoke(cli, ["subscribers", "import", "a.csv", "--consented"]).exit_code == 0
    (project / "b.csv").write_text("email,name,topics,cadence,timezone\nAnn@Example.org,Ann B,palliative-care,monthly,UTC\n")
    result = CliRunner().invoke(cli, ["subscribers", "import", "b.csv", "--consented"])
    assert result.exit_code == 0 and "imported 0 new, updated 1" in result.output
    assert count(db_url) == 1
    export = CliRunner().invoke(cli, ["subscribers", "export"]).output
    row = next(csv.DictReader(io.StringIO(export)))
    assert (row["name"], row["topics"], row["cadence"]) == ("Ann B", "palliative-care", "monthly")


def test_export_round_trips_through_import(project, db_url):
    (project / "people.csv").write_text(CSV)
    CliRunner().invoke(cli, ["subscribers", "import", "people.csv", "--consented"])
    first = CliRunner().invoke(cli, ["subscribers", "export"]).output
    (project / "again.csv").write_text(first)
    result = CliRunner().invoke(cli, ["subscribers", "import", "again.csv", "--consented"])
    assert result.exit_code == 0 and "updated 2" in result.output
    assert CliRunner().invoke(cli, ["subscribers", "export"]).output == first


def test_missing_file_is_a_clear_error(project):
    result = CliRunner().invoke(cli, ["subscribers", "import", "nope.csv"])
    assert result.exit_code == 1 and "nope.csv: file not found" in result.output


def test_import_warns_of_an_address_the_delivery_backend_can_never_reach(project, db_url, monkeypatch):
    (project / "people.csv").write_text("email,name,topics,cadence,timezone\n"
                                        "ann@example.org,Ann,,weekly,UTC\n"
                                        "zoë@example.org,Zoë,,weekly,UTC\n")
    monkeypatch.setenv("PIPELINE_DELIVERY", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test")
    result = CliRunner().invoke(cli, ["subscribers", "import", "people.csv", "--consented"])
    assert result.exit_code == 0, result.output
    assert ("people.csv:3: email: warning: imported, but PIPELINE_DELIVERY=sendgrid cannot send to it: SendGrid "
            "takes ASCII addresses only") in result.output
    assert "people.csv:2:" not in result.output
    assert "imported 2 new, updated 0, rejected 0 rows" in result.output
    assert count(db_url) == 2


def _states(db_url: str) -> dict[str, str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {r.email_key: r.status for r in conn.execute(select(subscribers))}
    finally:
        engine.dispose()


def test_export_carries_consent_and_suppressions_and_import_never_revives(project, db_url):
    from datetime import UTC, datetime

    from pipeline.store.tables import suppressions
    from pipeline.subscribers import repository

    engine = make_engine(db_url)
    at = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for email, status in [("in@example.org", "confirmed"), ("left@example.org", "unsubscribed"),
                              ("never@example.org", "pending"), ("bounced@example.org", "confirmed")]:
            repository.upsert(conn, email=email, name="", topics=(), cadence="weekly", timezone="UTC", at=at,
                              status=status, consent_source="web-double-opt-in" if status == "confirmed" else None)
        repository.suppress(conn, email="bounced@example.org", reason="bounce", at=at, source="sendgrid")
        repository.suppress(conn, email="gone@example.org", reason="spamreport", at=at, source="sendgrid")
    engine.dispose()
    export = CliRunner().invoke(cli, ["subscribers", "export"])
    assert export.exit_code == 0
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(export.output))}
    assert list(next(csv.reader(io.StringIO(export.output)))) == [
        "email", "name", "topics", "cadence", "timezone", "status", "consent_source", "consent_at", "suppression",
        "suppression_source", "suppressed_at"]
    assert rows["in@example.org"]["status"] == "confirmed"
    assert rows["in@example.org"]["consent_source"] == "web-double-opt-in"
    assert rows["in@example.org"]["consent_at"] == "2026-10-01T12:00:00+00:00"
    assert rows["left@example.org"]["status"] == "unsubscribed"
    assert rows["bounced@example.org"]["suppression"] == "bounce"
    assert rows["gone@example.org"]["suppression"] == "spamreport" and rows["gone@example.org"]["status"] == ""

    # Into a fresh database, with --consented: only the confirmed, unsuppressed person comes back confirmed.
    (project / "all.csv").write_text(export.output)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(subscribers.delete())
        conn.execute(suppressions.delete())
    engine.dispose()
    result = CliRunner().invoke(cli, ["subscribers", "import", "all.csv", "--consented"])
    assert result.exit_code == 0, result.output
    assert ("imported 1 new, updated 0, rejected 0 rows, left alone 4 rows "
            "(1 never confirmed, 2 suppressed, 1 unsubscribed)") in result.output
    assert _states(db_url) == {"in@example.org": "confirmed"}
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert {r.email_key: r.reason for r in conn.execute(select(suppressions))} == {
            "bounced@example.org": "bounce", "gone@example.org": "spamreport"}
        row = conn.execute(select(subscribers)).one()
        assert row.consent_source == "web-double-opt-in" and row.consent_at.isoformat() == "2026-10-01T12:00:00+00:00"
    engine.dispose()


def test_import_with_consent_never_revives_someone_who_unsubscribed_here(project, db_url):
    from datetime import UTC, datetime

    from pipeline.subscribers import repository

    engine = make_engine(db_url)
    with engine.begin() as conn:
        repository.upsert(conn, email="left@example.org", name="", topics=(), cadence="weekly", timezone="UTC",
                          at=datetime(2026, 10, 1, tzinfo=UTC), status="unsubscribed")
    engine.dispose()
    (project / "list.csv").write_text("email,name,topics,cadence,timezone\nleft@example.org,Left,,weekly,UTC\n")
    result = CliRunner().invoke(cli, ["subscribers", "import", "list.csv", "--consented"])
    assert result.exit_code == 0 and "left alone 1 rows (1 unsubscribed)" in result.output
    assert _states(db_url) == {"left@example.org": "unsubscribed"}


def test_export_neutralises_formulas_and_import_takes_the_quote_off(project, db_url):
    (project / "f.csv").write_text('email,name,topics,cadence,timezone\n'
                                   'a@example.org,"=HYPERLINK(""http://evil.example"",""x"")",,weekly,UTC\n'
                                   'b@example.org,@SUM(1+1),,weekly,UTC\n'
                                   '+c@example.org,-2+3,,weekly,UTC\n')
    assert CliRunner().invoke(cli, ["subscribers", "import", "f.csv", "--consented"]).exit_code == 0
    out = CliRunner().invoke(cli, ["subscribers", "export"]).output
    cells = [c for row in csv.reader(io.StringIO(out)) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    names = {r["email"]: r["name"] for r in csv.DictReader(io.StringIO(out))}
    assert names["'+c@example.org"] == "'-2+3" and names["b@example.org"] == "'@SUM(1+1)"
    (project / "back.csv").write_text(out)
    result = CliRunner().invoke(cli, ["subscribers", "import", "back.csv", "--consented"])
    assert result.exit_code == 0 and "updated 3" in result.output
    assert CliRunner().invoke(cli, ["subscribers", "export"]).output == out


def test_import_refuses_control_characters_by_line_and_field(project, db_url):
    (project / "c.csv").write_text('email,name,topics,cadence,timezone\n'
                                   'ok@example.org,Fine,,weekly,UTC\n'
                                   'bell@example.org,Ring\x07,,weekly,UTC\n'
                                   'nl@example.org,"two\nlines",,weekly,UTC\n')
    result = CliRunner().invoke(cli, ["subscribers", "import", "c.csv", "--consented"])
    assert result.exit_code == 1
    assert "c.csv:3: name: contains a control character" in result.output
    assert "c.csv:5: name: contains a control character" in result.output
    assert _states(db_url) == {"ok@example.org": "confirmed"}
