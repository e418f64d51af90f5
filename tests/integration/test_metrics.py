"""GET /metrics: off unless PIPELINE_METRICS=1; then Prometheus text with sends, feed builds, the scheduler's role,
webhook events and each digest's latest issue, and never an address in a label."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline import operations
from pipeline.context import Context
from pipeline.web.app import create_app
from tests.integration.websupport import make_settings
from tests.support.asgi import AsgiClient
from tests.support.db import add_subscribers
from tests.support.project import AT, make_project


def get(app, path: str):
    return AsgiClient(app).get(path)


def samples(body: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def context(tmp_path, database_url, **overrides) -> Context:
    project = make_project(tmp_path / "project")
    return Context(make_settings(tmp_path, database_url, content_dir=project / "content",
                                 schedules=project / "schedules.yaml", **overrides))


def test_metrics_are_off_unless_asked_for(tmp_path, database_url):
    ctx = context(tmp_path, database_url)
    try:
        response = get(create_app(ctx), "/metrics")
        assert response.status_code == 404
        assert "pipeline_" not in response.text
    finally:
        ctx.close()


def test_metrics_count_what_was_sent_and_built_and_read_the_latest_issue(tmp_path, database_url):
    ctx = context(tmp_path, database_url, metrics=True)
    try:
        add_subscribers(ctx.engine, 30)
        app = create_app(ctx)
        before = samples(get(app, "/metrics").text)
        sent_key = ("pipeline_messages_total", (("backend", "file"), ("kind", "digest"), ("outcome", "sent")))

        operations.build_feeds(ctx, at=AT)
        operations.send_digest(ctx, "weekly", at=AT, progress=False)
        response = get(app, "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["cache-control"] == "no-store"
        after = samples(response.text)
    finally:
        ctx.close()
    assert after[sent_key] - before.get(sent_key, 0) == 30
    assert after[("pipeline_feed_build_last_success", ())] == 1
    assert after[("pipeline_feed_build_last_timestamp_seconds", ())] > 0
    assert after[("pipeline_digest_latest_issue_recipients", (("digest", "weekly"), ("state", "sent")))] == 30
    assert after[("pipeline_digest_latest_issue_recipients", (("digest", "weekly"), ("state", "pending")))] == 0
    assert after[("pipeline_scheduler_role", (("role", "web-only"),))] == 1
    assert not [key for key in after if any("@" in str(v) for _, v in key[1])]


def test_metrics_show_the_outbox_depth_by_state_and_its_oldest_pending_age(tmp_path, database_url):
    import email.message
    from datetime import timedelta

    from pipeline.delivery import outbox
    from tests.integration.websupport import Clock

    ctx = context(tmp_path, database_url, metrics=True)
    clock = Clock()
    try:
        with ctx.engine.begin() as conn:
            for i, age in enumerate((90, 30, 5)):
                msg = email.message.EmailMessage()
                msg["From"], msg["To"], msg["X-Pipeline-Kind"] = "n@example.org", f"o{i}@example.org", "confirm"
                msg.set_content("hello")
                outbox.enqueue(conn, msg, at=clock.at - timedelta(seconds=age))
        with ctx.engine.begin() as conn:
            conn.execute(outbox.t_out.update().where(outbox.t_out.c.created_at < clock.at - timedelta(seconds=60))
                         .values(state="sent", message=None))
        body = get(create_app(ctx, clock=clock), "/metrics").text
    finally:
        ctx.close()
    got = samples(body)
    assert got[("pipeline_outbox_messages", (("state", "pending"),))] == 2
    assert got[("pipeline_outbox_messages", (("state", "sent"),))] == 1
    assert got[("pipeline_outbox_messages", (("state", "failed"),))] == 0
    assert got[("pipeline_outbox_oldest_pending_age_seconds", ())] == 30
    assert "example.org" not in body
