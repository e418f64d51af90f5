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
