from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.content.loader import load_library

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the repository's content and schedules in a temp working directory."""
    shutil.copytree(ROOT / "content", tmp_path / "content")
    shutil.copy(ROOT / "schedules.yaml", tmp_path / "schedules.yaml")
    monkeypatch.chdir(tmp_path)
    for var in ("PIPELINE_DATABASE_URL", "PIPELINE_CONTENT_DIR", "PIPELINE_SCHEDULES", "PIPELINE_PUBLIC_DIR",
                "PIPELINE_OUTBOX", "PIPELINE_DELIVERY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_check_passes_on_the_repository(project):
    result = run("check", "--at", "2026-11-25T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.output


def test_check_names_every_broken_file(project):
    (project / "content" / "treatment-goals-in-mbc.md").write_text(
        (project / "content" / "treatment-goals-in-mbc.md").read_text().replace("status: approved", "status: live"))
    (project / "content" / "coping-with-fatigue.md").write_text("no front matter at all\n")
    schedules = project / "schedules.yaml"
    schedules.write_text(schedules.read_text().replace('cron: "0 8 * * mon"', 'cron: "every monday"'))
    result = run("check")
    assert result.exit_code == 1
    lines = result.stderr.splitlines() if hasattr(result, "stderr") else result.output.splitlines()
    assert any(line.startswith("content/treatment-goals-in-mbc.md:") and ": status: " in line for line in lines)
    assert any(line.startswith("content/coping-with-fatigue.md:1: front matter: ") for line in lines)
    assert any(line.startswith("schedules.yaml:") and "jobs.weekly-digest.cron" in line for line in lines)
    assert "Traceback" not in result.output


def test_check_warns_about_hard_reading_and_old_reviews(project):
    path = project / "content" / "coping-with-fatigue.md"
    text = path.read_text()
    text = text.replace(text.split("summary: ", 1)[1].split("\n", 1)[0],
                        '"Multidisciplinary interdisciplinary pharmacological considerations necessitate comprehensive individualized evaluation."')
    import re
    text = re.sub(r"reviewed_on: .*", "reviewed_on: 2024-01-10", text)
    path.write_text(text)
    result = run("check", "--at", "2026-11-25T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert re.search(r"coping-with-fatigue\.md:\d+: summary: warning: reads at US grade", result.output)
    assert re.search(r"coping-with-fatigue\.md:\d+: reviewed_on: warning: .*over 12 months", result.output)


def test_content_list_filters_by_state(project):
    result = run("content", "list", "--status", "queued", "--at", "2026-11-25T12:00:00Z")
    assert result.exit_code == 0
    rows = result.output.strip().splitlines()
    assert rows and all(r.startswith("queued") for r in rows)
    live = run("content", "list", "--status", "live", "--at", "2026-11-25T12:00:00Z").output.strip().splitlines()
    assert len(live) >= 7 and not set(rows) & set(live)


def test_content_new_then_queue_is_refused_without_review(project):
    # A title no article in content/ has yet: an editor may already have written "Sleep and rest" there.
    n = 0
    while (project / "content" / f"sleep-and-rest-test-{n}.md").exists():
        n += 1
    slug = f"sleep-and-rest-test-{n}"
    result = run("content", "new", "--title", f"Sleep and rest test {n}", "--topics", "symptom-management",
                 "--at", "2026-12-01T09:00:00-05:00")
    assert result.exit_code == 0, result.output
    path = project / "content" / f"{slug}.md"
    assert path.is_file()
    before = path.read_text()
    refused = run("content", "queue", slug, "--at", "2026-12-03T09:00:00-05:00")
    assert refused.exit_code == 1
    assert "reviewed_by" in refused.output and "not queued" in refused.output
    assert path.read_text() == before


def test_queue_edits_front_matter_and_keeps_the_body(project):
    path = project / "content" / "caring-for-yourself-as-a-caregiver.md"
    original = path.read_text()
    body = original.split("\n---\n", 1)[1]
    text = original
    if "reviewed_by:" not in text.split("\n---\n", 1)[0]:
        text = text.replace("status: draft", 'status: draft\nreviewed_by: "Sample Reviewer, RN"\nreviewed_on: 2026-11-20')
    path.write_text(text)
    result = run("content", "queue", "caring-for-yourself-as-a-caregiver", "--at", "2027-02-01T09:00:00-05:00")
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert after.split("\n---\n", 1)[1] == body
    library, _ = load_library(project / "content")
    article = next(a for a in library.articles if a.slug == "caring-for-yourself-as-a-caregiver")
    assert article.status == "approved" and article.publish_at.isoformat() == "2027-02-01T09:00:00-05:00"


def test_queue_unknown_article(project):
    result = run("content", "queue", "no-such-article", "--at", "2027-02-01T09:00:00-05:00")
    assert result.exit_code == 1 and "no such article" in result.output


def test_bad_at_is_a_user_error(project):
    result = run("content", "list", "--at", "yesterday")
    assert result.exit_code == 1 and "--at" in result.output and "Traceback" not in result.output


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_has_help():
    for path, command in _commands(cli):
        assert command.help and len(command.help) > 10, " ".join(path)
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, " ".join(path)
