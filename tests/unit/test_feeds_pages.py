from __future__ import annotations

import json

from pipeline.content.render import body_html
from pipeline.feeds.bodies import render_bodies
from pipeline.feeds.pages import script_json


def test_script_json_cannot_break_out_of_its_script_element():
    data = {"name": "</script><script>alert(1)</script> & \u2028", "n": 1}
    out = str(script_json(data))
    assert "<" not in out and ">" not in out and "&" not in out and "\u2028" not in out
    assert json.loads(out) == data


def test_render_bodies_in_worker_processes_matches_body_html():
    bodies = [f"Para {i} with **bold** and <script>x()</script>" for i in range(6)] + ["Para 0 with **bold** and <script>x()</script>"]
    parallel = render_bodies(bodies, workers=2, parallel_min=0)
    assert len(parallel) == 6
    assert all(parallel[b] == body_html(b) for b in bodies)
    assert all("<script" not in html for html in parallel.values())
    assert render_bodies(bodies[:2]) == {b: body_html(b) for b in bodies[:2]}
