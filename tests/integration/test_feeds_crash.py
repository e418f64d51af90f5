"""Kill -9 a real `pipeline feeds build` while its page workers run: nothing it started lives on, and the next
build is complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from pipeline.feeds.bodies import PARALLEL_MIN
from tests.support.processes import tagged_processes
from tests.support.project import AT, ROOT, make_project, write_article

pytestmark = pytest.mark.slow

ARTICLES = 6 * PARALLEL_MIN
BODY = "\n\n".join(f"Paragraph {k}. A short plain sentence about care. Another one follows it." for k in range(40))


def many_articles(project, n: int) -> None:
    for i in range(n):
        write_article(project / "content", f"many-{i:04d}", title=f"Article number {i}",
                      summary=f"A short plain summary, number {i}.", topic="quality-of-life",
                      publish_at="2026-11-01T09:00:00+00:00", source=f"https://example.org/source-{i}", body=BODY)


def build(env, project) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "feeds", "build", "--at", AT.isoformat()],
                            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_of_a_feed_build_leaves_no_worker_and_the_next_build_is_complete(tmp_path):
    project = make_project(tmp_path / "project")
    many_articles(project, ARTICLES)
    pages = project / "public" / "articles"
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update({"PIPELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'pipeline.db'}",
                "PIPELINE_CONTENT_DIR": str(project / "content"), "PIPELINE_SCHEDULES": str(project / "schedules.yaml"),
                "PIPELINE_TEMPLATES_DIR": str(ROOT / "templates"), "PIPELINE_PUBLIC_DIR": str(project / "public"),
                "PIPELINE_VAR_DIR": str(project / "var"), "PIPELINE_SECRET_KEY": "crash-test-secret-0123456789",
                "PYTHONPATH": str(ROOT), "MBC_CRASH_TAG": tag})
    try:
        proc = build(env, project)
        deadline = time.monotonic() + 120
        # The build has page workers (forkserver and at least two workers beside it) and they are writing.
        while (len(tagged_processes(tag)) < 4 or len(list(pages.glob("*.html"))) < 50) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the build ended before it could be killed; give it more articles"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 5
        while tagged_processes(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tagged_processes(tag) == [], "a page worker (or its forkserver) outlived the killed build"

        again = build(env, project)
        _out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
    finally:
        for pid in tagged_processes(tag):
            os.kill(pid, signal.SIGKILL)
    built = {p.stem for p in pages.glob("*.html")}
    assert {f"many-{i:04d}" for i in range(ARTICLES)} <= built
    assert "Article number 123" in (pages / "many-0123.html").read_text(encoding="utf-8")
