"""Sending digests end to end, on SQLite and on PostgreSQL, into the file backend."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select, update

from pipeline.delivery import issue_rows, ledger
from pipeline.delivery.factory import make_backend
from pipeline.delivery.file import FileBackend
from pipeline.delivery.memory import MemoryBackend
from pipeline.digests.send import preview_digest, send_digest
from pipeline.errors import ConfigError, InputError
from pipeline.store.tables import deliveries, issues
from pipeline.store.tables import subscribers as t_sub
from pipeline.subscribers import repository
from pipeline.subscribers.tokens import Signer

AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
FIRE = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "digest-weekly.eml"


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def send(engine, settings, digest_library, digest_schedule):
    def run(name: str = "weekly", *, at: datetime = AT, backend=None, **kw):
        backend = backend or FileBackend(settings.outbox)
        kw.setdefault("clock", Clock(AT))
        return send_digest(name, at=at, settings=settings, engine=engine, library=digest_library,
                           schedule=digest_schedule, backend=backend, **kw)

    return run


def parse(path: Path):
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())


def outbox(settings) -> dict[str, object]:
    return {p.name: parse(p) for p in sorted(Path(settings.outbox).glob("*.eml"))}


def by_recipient(settings) -> dict[str, list]:
    out: dict[str, list] = {}
    for msg in outbox(settings).values():
        out.setdefault(str(msg["To"]), []).append(msg)
    return out


def test_sent_twice_gives_one_message_per_matching_subscriber(send, settings, add_subscriber, engine):
    add_subscriber("ann@example.org")
    add_subscriber("bo@example.org", topics=("hospice-end-of-life", "palliative-care"))
    add_subscriber("cy@example.net", topics=("treatment-progress",))  # nothing for them this week
    add_subscriber("di@example.com", cadence="monthly")
    add_subscriber("ed@example.org", status="pending")
    add_subscriber("fay@example.org")
    with engine.begin() as conn:
        repository.suppress(conn, email="fay@example.org", reason="bounce", at=AT - timedelta(days=3))

    first = send()
    assert first.created and first.sent_now == 2 and first.complete
    assert first.skipped_empty == 1 and first.variants == 2 and first.recipients == 2
    second = send()
    assert not second.created and second.sent_now == 0 and second.already_sent == 2 and second.complete

    got = by_recipient(settings)
    assert sorted(got) == ["ann@example.org", "bo@example.org"]
    assert all(len(msgs) == 1 for msgs in got.values())
    assert len(list(Path(settings.outbox).glob("*.eml"))) == 2
    assert ledger.counts(engine, first.issue_id)["sent"] == 2

    ann_html = got["ann@example.org"][0].get_body(("html",)).get_content()
    bo_html = got["bo@example.org"][0].get_body(("html",)).get_content()
    assert "How to look for a clinical trial" in ann_html and "Talking about hospice" not in ann_html
    assert "Talking about hospice" in bo_html
    assert "A gentle note: this item is about end-of-life care." in bo_html


def test_headers_links_and_escaping(send, settings, add_subscriber):
    sid = add_subscriber("ann@example.org")
    send()
    [msg] = outbox(settings).values()
    signer = Signer(settings.secret_key)

    assert msg["From"] == "MBC Digest <digest@example.org>"
    assert msg["Subject"] == "MBC Digest: this week (23 November 2026)"
    assert msg["Date"] == format_datetime(FIRE.astimezone(ZoneInfo("America/New_York")))
    assert msg["Date"].datetime == FIRE
    assert msg["List-Id"] == '"MBC Digest: this week" <weekly.digest.example.org>'
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"].startswith(f"<digest-weekly-20261123T1300Z.s{sid}.")
    assert msg["Message-ID"].endswith("@example.org>")
    one_click = str(msg["List-Unsubscribe"])
    assert one_click.startswith("<https://digest.example.org/u/") and one_click.endswith(">")
    claims = signer.verify("unsubscribe", one_click[1:-1].rsplit("/", 1)[1])
    assert claims.subscriber_id == sid

    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "Pain &lt;b&gt;&amp; tiredness&lt;/b&gt;" in html and "<b>&" not in html
    assert "Pain <b>& tiredness</b>" in text
    assert "-unsubscribe_url-" not in html + text and "-preferences_url-" not in html + text
    assert 'href="https://digest.example.org/articles/pain-and-tiredness.html"' in html
    assert "Reviewed by Dr Ada Example, palliative care physician on 2 November 2026. Next review due 2 November 2027." in html
    assert "It does not replace advice from your own care team" in html
    assert settings.postal_address in html and settings.postal_address in text
    assert "<img" not in html  # no tracking pixels
    pref = html.split('href="https://digest.example.org/preferences/', 1)[1].split('"', 1)[0]
    assert signer.verify("preferences", pref).subscriber_id == sid
    unsub = html.split('href="https://digest.example.org/unsubscribe/', 1)[1].split('"', 1)[0]
    assert signer.verify("unsubscribe", unsub).subscriber_id == sid
    assert f"https://digest.example.org/unsubscribe/{unsub}" in text


def test_messages_are_identical_across_runs(send, settings, add_subscriber, engine):
    add_subscriber("ann@example.org")
    add_subscriber("bo@example.org", topics=("symptom-management",))
    send()
    before = {p.name: p.read_bytes() for p in Path(settings.outbox).glob("*.eml")}
    with engine.begin() as conn:  # forget the issue entirely, as if on a fresh ledger
        conn.execute(delete(deliveries))
        conn.execute(delete(issues))
    for p in Path(settings.outbox).glob("*.eml"):
        p.unlink()
    report = send(clock=Clock(AT + timedelta(hours=5)))
    assert report.created and report.sent_now == 2
    after = {p.name: p.read_bytes() for p in Path(settings.outbox).glob("*.eml")}
    assert after == before


def test_crash_then_rerun_finishes_adds_nobody_and_drops_the_unsubscribed(send, settings, add_subscriber, engine):
    ann = add_subscriber("ann@example.org")
    bo = add_subscriber("bo@example.org")
    cy = add_subscriber("cy@example.org")

    class Crashing(FileBackend):
        max_batch = 1

        def send_batch(self, issue, variant, recipients):
            raise KeyboardInterrupt  # the process dies mid-send

    with pytest.raises(KeyboardInterrupt):
        send(backend=Crashing(settings.outbox))
    with engine.connect() as conn:
        issue_id = issue_rows.find_issue(conn, "weekly", FIRE)
    assert ledger.counts(engine, issue_id)["in_flight"] == 1 and ledger.counts(engine, issue_id)["pending"] == 2

    add_subscriber("late@example.org")  # joins after planning: not part of this issue
    with engine.begin() as conn:
        conn.execute(update(t_sub).where(t_sub.c.id == cy).values(status="unsubscribed"))

    # Same clock: the in-flight claim is young and its process is alive, so it is left alone.
    report = send()
    assert report.sent_now == 1 and not report.complete
    assert ledger.counts(engine, issue_id)["in_flight"] == 1
    # An hour later the claim counts as stale: it is sent again and recorded as a possible duplicate.
    report = send(clock=Clock(AT + timedelta(hours=1)))
    assert report.complete and report.recovered == 1 and report.possible_duplicates == 1
    assert report.suppressed == 1 and report.recipients == 3

    got = by_recipient(settings)
    assert sorted(got) == ["ann@example.org", "bo@example.org"]
    with engine.connect() as conn:
        states = dict(conn.execute(select(deliveries.c.subscriber_id, deliveries.c.state)).all())
    assert states == {ann: "sent", bo: "sent", cy: "suppressed"}


def test_a_failed_settle_stops_the_send_and_the_next_run_finishes_without_duplicates(send, add_subscriber, engine,
                                                                                      monkeypatch):
    emails = [f"reader{i}@example.org" for i in range(30)]
    for email in emails:
        add_subscriber(email)
    backend = MemoryBackend(max_batch=2)  # 15 batches, settled on their own thread
    real_settle, calls = ledger.settle, []

    def failing_settle(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("database went away while settling")
        return real_settle(*args, **kw)
    monkeypatch.setattr(ledger, "settle", failing_settle)
    with pytest.raises(RuntimeError, match="while settling"):
        send(backend=backend)
    first_run = len(backend.sent)
    assert 0 < first_run < len(emails)
    monkeypatch.setattr(ledger, "settle", real_settle)
    report = send(backend=backend)
    assert report.complete and report.possible_duplicates == 0
    assert report.counts["sent"] == len(emails) and report.sent_now == len(emails) - first_run
    assert sorted(r.email for _issue, _variant, r in backend.sent) == sorted(emails)  # each exactly once


def test_a_send_asked_to_stop_ends_after_the_batch_that_is_out_and_the_next_run_finishes(send, add_subscriber,
                                                                                         engine):
    emails = [f"reader{i}@example.org" for i in range(30)]
    for email in emails:
        add_subscriber(email)
    backend, stop, recorded = MemoryBackend(max_batch=2), threading.Event(), []

    def stop_after_three(total: int | None = None, **counts: int) -> None:
        if total is None:
            recorded.append(counts)
            if len(recorded) == 3:
                stop.set()
    report = send(backend=backend, on_batch=stop_after_three, stop=stop)
    assert not report.complete and "run again" in report.lines()[-1]
    assert report.sent_now == len(backend.sent) == 8  # the three recorded, then the one that was out
    with engine.connect() as conn:
        states = dict(conn.execute(select(deliveries.c.state, func.count()).group_by(deliveries.c.state)).all())
        flagged = conn.execute(select(func.count()).where(deliveries.c.possible_duplicate.is_(True))).scalar()
    assert states == {"sent": 8, "pending": 22} and flagged == 0  # nothing left in flight, nothing to flag
    report = send(backend=backend)
    assert report.complete and report.possible_duplicates == 0 and report.sent_now == 22
    assert sorted(r.email for _issue, _variant, r in backend.sent) == sorted(emails)  # each exactly once


def test_failed_sends_are_retried_on_the_next_run(send, settings, add_subscriber, engine):
    add_subscriber("ann@example.org")
    add_subscriber("bo@example.org")
    report = send(backend=MemoryBackend(fail=frozenset({"bo@example.org"})))
    assert report.sent_now == 1 and report.failed == 1 and report.complete
    report = send(backend=MemoryBackend())
    assert report.sent_now == 1 and report.failed == 0 and report.counts["sent"] == 2


def test_dry_run_writes_nothing(send, settings, add_subscriber, engine):
    add_subscriber("ann@example.org")
    backend = MemoryBackend()
    report = send(backend=backend, dry_run=True)
    assert report.dry_run and report.recipients == 1 and report.variants == 1 and report.articles == 4
    assert backend.sent == [] and not Path(settings.outbox).exists() and not Path(settings.public_dir).exists()
    with engine.connect() as conn:
        assert conn.execute(select(issues.c.id)).first() is None
    assert any("Dry run" in line for line in report.lines())


def test_two_workers_at_once_send_each_message_once(make_db, settings, add_subscriber, digest_library, digest_schedule):
    for i in range(40):
        add_subscriber(f"reader{i}@example.org", topics=("hospice-end-of-life",) if i % 4 == 0 else ())
    backends = [MemoryBackend(max_batch=3), MemoryBackend(max_batch=3)]
    reports, errors = [], []

    engines = [make_db(), make_db()]  # migrate before the threads start: Alembic is not thread-safe

    def worker(backend, engine):
        try:
            reports.append(send_digest("weekly", at=AT, settings=settings, engine=engine, library=digest_library,
                                       schedule=digest_schedule, backend=backend, write_archive=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(b, e)) for b, e in zip(backends, engines, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sent = [r.email for b in backends for (_, _, r) in b.sent]
    assert len(sent) == 40 and len(set(sent)) == 40
    assert sum(r.sent_now for r in reports) == 40
    assert sum(r.created for r in reports) == 1


def test_archive_is_generic_and_indexed(send, settings, add_subscriber):
    add_subscriber("ann@example.org")
    send()
    page = Path(settings.public_dir) / "digests" / "weekly" / "2026-11-23.html"
    html = page.read_text(encoding="utf-8")
    assert "Talking about hospice" in html  # the web copy has every article of the issue
    assert "/u/" not in html and "/unsubscribe/" not in html and "/preferences/" not in html
    assert "-unsubscribe_url-" not in html and "https://digest.example.org/subscribe" in html
    index = (Path(settings.public_dir) / "digests" / "index.html").read_text(encoding="utf-8")
    assert 'href="weekly/2026-11-23.html"' in index and "23 November 2026" in index


def test_preview(settings, digest_library, digest_schedule):
    html = preview_digest("weekly", at=AT, settings=settings, library=digest_library, schedule=digest_schedule,
                          topics=("clinical-trials",))
    assert "How to look for a clinical trial" in html and "Palliative care is not" not in html
    assert "-unsubscribe_url-" not in html
    with pytest.raises(InputError):
        preview_digest("weekly", at=AT, settings=settings, library=digest_library, schedule=digest_schedule,
                       topics=("treatment-progress",))
    with pytest.raises(InputError):
        preview_digest("weekly", at=AT, settings=settings, library=digest_library, schedule=digest_schedule,
                       topics=("no-such-topic",))


def test_make_backend(settings):
    assert isinstance(make_backend(settings.evolve(delivery="file")), FileBackend)
    assert isinstance(make_backend(settings.evolve(delivery="memory")), MemoryBackend)
    from pipeline.delivery.sendgrid import SendGridBackend
    from pipeline.delivery.smtp import SmtpBackend

    assert isinstance(make_backend(settings.evolve(delivery="sendgrid", sendgrid_api_key="SG.x")), SendGridBackend)
    assert isinstance(make_backend(settings.evolve(delivery="smtp", smtp_url="smtp://127.0.0.1:2525")), SmtpBackend)
    with pytest.raises(ConfigError):
        make_backend(settings.evolve(delivery="pigeon"))


def test_golden_message(send, settings, add_subscriber):
    sid = add_subscriber("ann@example.org")
    assert sid == 1
    send()
    [path] = Path(settings.outbox).glob("*.eml")
    data = path.read_bytes()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(data)
    assert GOLDEN.exists(), "no golden file yet: run with UPDATE_GOLDEN=1 and review tests/golden/digest-weekly.eml"
    assert data == GOLDEN.read_bytes(), "digest changed: review it, then regenerate with UPDATE_GOLDEN=1"
    assert path.name == "digest-weekly-20261123T1300Z.s1." + path.name.split(".")[2] + ".eml"


def test_suppressed_or_paused_after_planning_are_never_sent(send, settings, add_subscriber, engine):
    """Invariant 2 at claim time: what changes between planning and a batch decides that batch."""
    ids = {name: add_subscriber(f"{name}@example.org") for name in ("ann", "bo", "cy", "di", "ed")}

    class PlanOnly(FileBackend):
        def send_batch(self, issue, variant, recipients):
            raise KeyboardInterrupt  # stop right after planning, before anything is sent

    with pytest.raises(KeyboardInterrupt):
        send(backend=PlanOnly(settings.outbox))
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.state == "in_flight").values(
            state="pending", batch_id=None, claimed_by=None, claimed_at=None))
        repository.suppress(conn, email="BO@example.org", reason="bounce", at=AT)  # case-insensitive match
        conn.execute(update(t_sub).where(t_sub.c.id == ids["cy"]).values(paused_until=AT + timedelta(weeks=4)))
        conn.execute(update(t_sub).where(t_sub.c.id == ids["di"]).values(paused_until=AT - timedelta(minutes=1)))
        conn.execute(update(t_sub).where(t_sub.c.id == ids["ed"]).values(status="unsubscribed"))
    report = send()
    assert report.complete
    assert sorted(by_recipient(settings)) == ["ann@example.org", "di@example.org"]
    with engine.connect() as conn:
        states = dict(conn.execute(select(deliveries.c.subscriber_id, deliveries.c.state)).all())
    assert states == {ids["ann"]: "sent", ids["bo"]: "suppressed", ids["cy"]: "suppressed", ids["di"]: "sent",
                      ids["ed"]: "suppressed"}
