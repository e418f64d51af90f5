from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from pipeline.content.model import Article, Library, Source, Topic
from pipeline.content.render import body_html
from pipeline.feeds.bodies import PageJob, write_pages
from pipeline.feeds.model import Site
from pipeline.feeds.pages import script_json

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_script_json_cannot_break_out_of_its_script_element():
    data = {"name": "</script><script>alert(1)</script> & \u2028", "n": 1}
    out = str(script_json(data))
    assert "<" not in out and ">" not in out and "&" not in out and "\u2028" not in out
    assert json.loads(out) == data


def test_pages_written_by_worker_processes_match_the_serial_path(tmp_path):
    topics = (Topic(id="a", title="Topic A", description="About A."),)
    arts = [Article(slug=f"p{i}", title=f"P {i} & <b>", summary="S.", topics=("a",), status="approved",
                    publish_at=datetime(2026, 11, 1, tzinfo=UTC), sources=(Source(title="T", url="https://example.org/"),),
                    reviewed_by="Dr. R", reviewed_on=date(2026, 11, 1), body=f"Para {i} **bold** <script>x()</script>")
            for i in range(7)]

    def job(name: str) -> PageJob:
        return PageJob(templates_dir=TEMPLATES, site=Site.make("https://digest.example.org", "MBC Digest"),
                       library=Library(topics=topics, articles=()), css_version="v", articles_dir=tmp_path / name)

    changed, html = write_pages(job("parallel"), arts, keep_html=frozenset({"p3"}), workers=2, parallel_min=0)
    assert changed == 7 and html == {"p3": body_html(arts[3].body)}
    assert write_pages(job("serial"), arts, workers=1) == (7, {})
    for a in arts:
        page = (tmp_path / "parallel" / f"{a.slug}.html").read_bytes()
        assert page == (tmp_path / "serial" / f"{a.slug}.html").read_bytes()
        assert b"<script>x()" not in page
    assert write_pages(job("parallel"), arts, workers=2, parallel_min=0)[0] == 0  # identical bytes: no rewrite
