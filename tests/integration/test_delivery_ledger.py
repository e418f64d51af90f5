"""The ledger's batches, claims and recovery, on SQLite and PostgreSQL; and the batch worker against the sender's
own build, request for request."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from pipeline.delivery import issue_rows, ledger, recovery
from pipeline.delivery.backend import Outcome
from pipeline.delivery.sendgrid import SendGridBackend
from pipeline.delivery.sendgrid_spec import NON_ASCII_ADDRESS
from pipeline.digests.send import send_digest
from pipeline.store.engine import make_engine
from pipeline.store.tables import deliveries, delivery_posts, subscribers
from pipeline.subscribers import repository
from tests.support.db import add_issue, add_subscribers
from tests.support.sendgrid_sink import SinkServer

AT = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def rows(engine, issue_id):
    with engine.connect() as conn:
        return {r.subscriber_id: r for r in conn.execute(select(deliveries).where(deliveries.c.issue_id == issue_id))}


def open_by_topics(engine, topics_of: dict[int, str], variant_of: dict[str, str], *, batch_size: int,
                   fire_at: datetime = AT, planned_at: datetime = AT) -> int:
    """Give subscribers these topics and open the issue at ``fire_at`` for the eligible ones, each getting the
    variant of their topics."""
    with engine.begin() as conn:
        for sid, topics in topics_of.items():
            conn.execute(update(subscribers).where(subscribers.c.id == sid).values(topics=topics))
    per_variant: dict[str, int] = {}

    def plan(conn) -> issue_rows.ByTopics:
        for topics, n in repository.eligible_topic_counts(conn, cadence="weekly", at=AT):
            if topics in variant_of:
                per_variant[variant_of[topics]] = per_variant.get(variant_of[topics], 0) + n
        return issue_rows.ByTopics(selection=repository.eligible_selection(cadence="weekly", at=AT),
                                   variant_of=variant_of, per_variant=per_variant)
    issue_id, created, planned_rows = issue_rows.open_issue(engine, "weekly", fire_at, (fire_at - timedelta(days=7), fire_at),
                                              plan, at=planned_at, batch_size=batch_size)
    assert created and planned_rows == sum(per_variant.values())
    return issue_id


def send_through(server: SinkServer, engine, settings, library, schedule, **kw):
    """Send the weekly issue through the SendGrid backend to ``server``, the loopback sink."""
    return send_digest("weekly", at=AT + timedelta(hours=1), settings=settings, engine=engine, library=library,
                       schedule=schedule, backend=SendGridBackend("SG.k", host=server.url, timeout=10),
                       write_archive=False, **kw)


def planned(engine, n: int) -> tuple[list[int], int]:
    """n subscribers and an issue of them all, in batches of 10."""
    ids = add_subscribers(engine, n)
    return ids, open_by_topics(engine, {}, {"": "v"}, batch_size=10)


def post_one_claim_next(engine, issue_id: int) -> tuple[ledger.Claim, ledger.Claim]:
    """A sender (on this host, since gone) posts its first batch and claims the next one ahead."""
    first = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="host:1:dead", at=AT)
    ledger.post(engine, issue_id, finished=None, posting=first, at=AT)
    second = ledger.claim_next(engine, issue_id, (first.batch_no, ledger.END_OF_BATCH), limit=10,
                               worker_id="host:1:dead", at=AT)
    return first, second


def sent(claim: ledger.Claim) -> ledger.Finished:
    return ledger.Finished(batch_no=claim.batch_no, batch_id=claim.batch_id,
                           outcomes=[Outcome(subscriber_id=r.subscriber_id, state="sent") for r in claim.rows])


def test_planning_cuts_each_variant_into_batches_of_the_backend_size(engine):
    ids = add_subscribers(engine, 25)
    issue_id = open_by_topics(engine, {sid: ("a" if sid % 2 else "b") for sid in ids}, {"a": "a", "b": "b"},
                              batch_size=5)
    batches: dict[int, set[str]] = {}
    sizes: dict[int, int] = {}
    for r in rows(engine, issue_id).values():
        batches.setdefault(r.batch_no, set()).add(r.variant)
        sizes[r.batch_no] = sizes.get(r.batch_no, 0) + 1
    assert all(len(v) == 1 for v in batches.values()), "a batch holds one variant"
    assert sorted(sizes.values()) == [2, 3, 5, 5, 5, 5]  # 13 of "a" as 5+5+3, 12 of "b" as 5+5+2
    assert sorted(sizes) == list(range(6))


def test_planning_gives_each_variant_its_own_batches_in_subscriber_order(engine):
    # 23 subscribers over four topic choices, two of them sharing variant "a"; "none" gets nothing; one of
    # "x" unsubscribed and one paused: neither is eligible.
    ids = add_subscribers(engine, 23)
    topics_of = {sid: ("x", "y", "z", "none")[sid % 4] for sid in ids}
    with engine.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.id == 4).values(status="unsubscribed"))
        conn.execute(update(subscribers).where(subscribers.c.id == 8).values(paused_until=AT + timedelta(days=1)))
    variant_of = {"x": "a", "y": "b", "z": "a"}
    in_db = open_by_topics(engine, topics_of, variant_of, batch_size=4)
    with engine.connect() as conn:
        counts = repository.eligible_topic_counts(conn, cadence="weekly", at=AT)
    assert counts == [("none", 6), ("x", 3), ("y", 6), ("z", 6)]
    eligible = {sid: variant_of[t] for sid, t in topics_of.items() if t in variant_of and sid not in (4, 8)}
    expected, batch_no = {}, 0  # each variant in key order, its subscribers in id order, cut into runs of 4
    for key in sorted(set(eligible.values())):
        members = sorted(sid for sid, v in eligible.items() if v == key)
        for start in range(0, len(members), 4):
            expected.update({sid: (key, batch_no, "pending") for sid in members[start:start + 4]})
            batch_no += 1
    got = {sid: (r.variant, r.batch_no, r.state) for sid, r in rows(engine, in_db).items()}
    assert got == expected
    assert sorted(got) == sorted(eligible) and 4 not in got and 8 not in got
    assert {b for _v, b, _s in got.values()} == set(range(5))  # "a": 4+4+1, "b": 4+2


def test_a_batch_larger_than_the_limit_is_claimed_a_limit_at_a_time(engine):
    # Issues planned before batches existed have every row in batch 0.
    issue_id = add_issue(engine, add_subscribers(engine, 25))
    cursor, claims, finished = (-1, -1), [], None
    while claim := ledger.claim_next(engine, issue_id, cursor, limit=10, worker_id="w", at=AT):
        ledger.post(engine, issue_id, finished=finished, posting=claim, at=AT)
        finished = sent(claim)
        claims.append(len(claim.rows))
        cursor = (claim.batch_no, claim.found[-1][0])
    ledger.post(engine, issue_id, finished=finished, posting=None, at=AT)
    assert claims == [10, 10, 5]
    # Each batch the backend took whole is recorded by its marker at once, and its rows are settled later.
    with engine.connect() as conn:
        assert {r.outcome for r in conn.execute(select(delivery_posts))} == {"sent"}
    assert ledger.settle(engine, issue_id) == 25
    assert {r.state for r in rows(engine, issue_id).values()} == {"sent"}
    assert ledger.counts(engine, issue_id)["sent"] == 25
    with engine.connect() as conn:
        assert conn.execute(select(delivery_posts)).all() == []


def test_recovery_flags_the_posted_batch_only(engine):
    _ids, issue_id = planned(engine, 30)
    posted, ahead = post_one_claim_next(engine, issue_id)
    assert ahead.batch_no == posted.batch_no + 1
    assert ledger.counts(engine, issue_id)["in_flight"] == 20

    back = recovery.recover_stale(engine, issue_id, older_than=AT + timedelta(minutes=1))
    assert back == 20
    got = rows(engine, issue_id)
    assert {sid for sid, r in got.items() if r.possible_duplicate} == {r.subscriber_id for r in posted.rows}
    assert {r.state for r in got.values()} == {"pending"}
    with engine.connect() as conn:
        assert conn.execute(select(delivery_posts)).all() == []


def test_after_a_crash_a_batch_recorded_by_its_marker_is_sent_not_resent(engine):
    _ids, issue_id = planned(engine, 20)
    first, second = post_one_claim_next(engine, issue_id)
    done, deferred = ledger.post(engine, issue_id, finished=sent(first), posting=second, at=AT)
    assert deferred and done == {"sent": 10}
    assert {k: v for k, v in ledger.counts(engine, issue_id).items() if v} == {"sent": 10, "in_flight": 10}
    # The sender dies here: the first batch's rows are still in flight, the second batch is on the wire.
    assert recovery.recover_stale(engine, issue_id, older_than=AT + timedelta(minutes=1)) == 10
    got = rows(engine, issue_id)
    assert {got[r.subscriber_id].state for r in first.rows} == {"sent"}
    assert not any(got[r.subscriber_id].possible_duplicate for r in first.rows)
    assert {(got[r.subscriber_id].state, got[r.subscriber_id].possible_duplicate) for r in second.rows} == {
        ("pending", True)}


def test_mixed_outcomes_are_recorded_row_by_row_at_once(engine):
    ids, issue_id = planned(engine, 3)
    claim = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="w", at=AT)
    ledger.post(engine, issue_id, finished=None, posting=claim, at=AT)
    outcomes = [Outcome(subscriber_id=ids[0], state="sent", provider_status="202"),
                Outcome(subscriber_id=ids[1], state="failed", reason="substitutions too long"),
                Outcome(subscriber_id=ids[2], state="unknown", reason="timeout")]
    done, deferred = ledger.post(engine, issue_id, at=AT, posting=None, finished=ledger.Finished(
        batch_no=claim.batch_no, batch_id=claim.batch_id, outcomes=outcomes))
    assert not deferred and done == {"sent": 1, "failed": 1, "unknown": 1}
    got = rows(engine, issue_id)
    assert [got[i].state for i in ids] == ["sent", "failed", "unknown"]
    with engine.connect() as conn:
        assert conn.execute(select(delivery_posts)).all() == []


def test_a_claim_given_back_is_pending_as_before(engine):
    ids, issue_id = planned(engine, 4)
    claim = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="w", at=AT)
    assert ledger.release(engine, issue_id, claim) == 4
    got = rows(engine, issue_id)
    assert {(r.state, r.attempts, r.batch_id, r.possible_duplicate) for r in got.values()} == {("pending", 0, None, False)}


def test_a_claim_suppresses_whoever_stopped_being_mailable(engine):
    ids, issue_id = planned(engine, 3)
    with engine.begin() as conn:
        repository.suppress(conn, email=f"READER{ids[0]}@example.org", reason="bounce", at=AT)
    claim = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="w", at=AT)
    assert claim.suppressed == (ids[0],) and [r.subscriber_id for r in claim.rows] == ids[1:]
    assert rows(engine, issue_id)[ids[0]].state == "suppressed"


def test_a_claim_sees_every_change_since_planning_through_the_change_log(engine):
    ids, issue_id = planned(engine, 8)
    planned_rows = rows(engine, issue_id)
    assert {sid: (r.email, r.token_version) for sid, r in planned_rows.items()} == {
        sid: (f"reader{sid}@example.org", 0) for sid in ids}  # contacts copied at planning
    gone_by_status, paused, moved, rotated, deleted, suppressed, untouched, renamed = ids
    with engine.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.id == gone_by_status).values(status="unsubscribed"))
        conn.execute(update(subscribers).where(subscribers.c.id == paused).values(paused_until=AT + timedelta(weeks=2)))
        conn.execute(update(subscribers).where(subscribers.c.id == moved).values(
            email="moved@example.net", email_key="moved@example.net"))
        conn.execute(update(subscribers).where(subscribers.c.id == rotated).values(token_version=3))
        conn.execute(subscribers.delete().where(subscribers.c.id == deleted))
        repository.suppress(conn, email=f"Reader{suppressed}@Example.org", reason="spamreport", at=AT)
        conn.execute(update(subscribers).where(subscribers.c.id == renamed).values(name="New name"))  # not watched
    claim = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="w", at=AT)
    assert sorted(claim.suppressed) == sorted([gone_by_status, paused, deleted, suppressed])
    assert {r.subscriber_id: (r.email, r.token_version) for r in claim.rows} == {
        moved: ("moved@example.net", 0), rotated: (f"reader{rotated}@example.org", 3),
        untouched: (f"reader{untouched}@example.org", 0), renamed: (f"reader{renamed}@example.org", 0)}
    got = rows(engine, issue_id)
    assert {sid for sid, r in got.items() if r.state == "suppressed"} == set(claim.suppressed)
    assert all(got[sid].email is None for sid in claim.suppressed)


def test_rows_keep_no_address_once_done_and_a_retry_looks_it_up(engine):
    ids, issue_id = planned(engine, 3)
    claim = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="w", at=AT)
    ledger.post(engine, issue_id, finished=None, posting=claim, at=AT)
    ledger.finish(engine, issue_id, ledger.Finished(batch_no=claim.batch_no, batch_id=claim.batch_id, outcomes=[
        Outcome(subscriber_id=ids[0], state="sent", provider_status="202"),
        Outcome(subscriber_id=ids[1], state="failed", reason="refused"),
        Outcome(subscriber_id=ids[2], state="sent", provider_status="202")]), at=AT)
    assert {sid: (r.state, r.email) for sid, r in rows(engine, issue_id).items()} == {
        ids[0]: ("sent", None), ids[1]: ("failed", None), ids[2]: ("sent", None)}
    # The retry finds no planned address on the row, so it reads the subscriber's current one.
    with engine.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.id == ids[1]).values(
            email="new@example.com", email_key="new@example.com"))
        conn.execute(text("DELETE FROM subscriber_changes"))  # the lookup must not depend on the change log
    assert recovery.requeue_failed(engine, issue_id, max_attempts=3) == 1
    retry = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="w", at=AT)
    assert [(r.subscriber_id, r.email) for r in retry.rows] == [(ids[1], "new@example.com")]


def test_an_issue_planned_before_the_change_log_checks_every_row(engine):
    ids = add_subscribers(engine, 3)
    issue_id = add_issue(engine, ids)  # no changes_since, no planned contacts: as revision 0002 left them
    with engine.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.id == ids[0]).values(status="unsubscribed"))
        conn.execute(text("DELETE FROM subscriber_changes"))
    claim = ledger.claim_next(engine, issue_id, (-1, -1), limit=10, worker_id="w", at=AT)
    assert claim.suppressed == (ids[0],)
    assert [(r.subscriber_id, r.email) for r in claim.rows] == [(i, f"reader{i}@example.org") for i in ids[1:]]


def test_planning_drops_old_changes_that_no_open_issue_watches(engine):
    ids, first = planned(engine, 2)
    old = "datetime('now', '-40 days')" if engine.dialect.name == "sqlite" else "now() - interval '40 days'"
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO subscriber_changes (subscriber_id, changed_at) VALUES (1, {old})"))
        conn.execute(text("UPDATE issues SET changes_since = " + old.replace("40", "41")))  # watched: kept
    open_by_topics(engine, {}, {"": "v"}, batch_size=10, fire_at=AT + timedelta(days=7))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriber_changes")).scalar() == 1
    assert not ledger.close_issue(engine, first, at=AT)[0]  # rows still pending: it still watches
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.issue_id == first).values(state="sent"))
    assert ledger.close_issue(engine, first, at=AT)[0]
    open_by_topics(engine, {}, {"": "v"}, batch_size=10, fire_at=AT + timedelta(days=14))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriber_changes")).scalar() == 0


def test_an_issue_left_unfinished_for_a_week_drops_the_addresses_it_copied(engine):
    ids = add_subscribers(engine, 3)
    old = open_by_topics(engine, {}, {"": "v"}, batch_size=10)
    recent = open_by_topics(engine, {}, {"": "v"}, batch_size=10, fire_at=AT + timedelta(days=7),
                            planned_at=AT + timedelta(days=6))
    assert all(r.email for r in rows(engine, old).values())  # six days: kept
    with engine.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.id == ids[0]).values(
            email="new@example.com", email_key="new@example.com"))
        conn.execute(text("DELETE FROM subscriber_changes"))  # only a fresh lookup can see the new address
    open_by_topics(engine, {}, {"": "v"}, batch_size=10, fire_at=AT + timedelta(days=14),
                   planned_at=AT + timedelta(days=8))
    assert {r.email for r in rows(engine, old).values()} == {None}
    assert {r.email for r in rows(engine, recent).values()} == {f"reader{i}@example.org" for i in ids}
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT changes_since FROM issues WHERE id = {old}")).scalar() is None
    # Run again after all, the old issue reads every recipient afresh.
    claim = ledger.claim_next(engine, old, (-1, -1), limit=10, worker_id="w", at=AT + timedelta(days=8))
    assert [(r.subscriber_id, r.email) for r in claim.rows] == [
        (ids[0], "new@example.com"), *[(i, f"reader{i}@example.org") for i in ids[1:]]]


def test_the_batch_worker_builds_exactly_what_the_sender_builds(tmp_path, settings, digest_library, digest_schedule):
    topics = sorted(digest_library.topic_ids)
    combos = [(), (topics[0],), (topics[0], topics[1]), (topics[-1],)]
    captured = {}
    for mode in (False, True):
        engine = make_engine(f"sqlite:///{tmp_path}/{mode}.db")
        with engine.begin() as conn:
            for i in range(2300):
                repository.upsert(conn, email=f"reader{i}@example.org", name="", topics=combos[i % len(combos)],
                                  cadence="weekly", timezone="UTC", at=AT - timedelta(days=30), status="confirmed",
                                  consent_source="test")
        with SinkServer() as server:
            report = send_through(server, engine, settings, digest_library, digest_schedule, encode_in_worker=mode)
            bodies = server.sink.bodies
        engine.dispose()
        assert report.complete and report.sent_now > 1500 and server.sink.problems == []
        people = {}
        for body in bodies:
            common = {k: v for k, v in body.items() if k != "personalizations"}
            for p in body["personalizations"]:
                args = dict(p["custom_args"])
                assert args.pop("mbc_batch")  # a random claim id: differs between runs
                people[args["mbc_rid"]] = ({**p, "custom_args": args}, common)
        captured[mode] = people
    assert captured[True] == captured[False]
    assert len(captured[True]) == report.sent_now


def test_the_batch_worker_starts_while_planning_and_goes_if_planning_fails(tmp_path, monkeypatch, settings,
                                                                           digest_library, digest_schedule):
    from pipeline.digests import batch_worker

    engine = make_engine(f"sqlite:///{tmp_path}/w.db")
    add_subscribers(engine, 30)
    pids: list[int] = []
    started = batch_worker.BatchWorker.__init__

    def tracked(self, *args, **kwargs):
        started(self, *args, **kwargs)
        pids.append(self.pid)
    monkeypatch.setattr(batch_worker.BatchWorker, "__init__", tracked)
    seen_while_planning = []

    def failing_insert(*args, **kwargs):
        seen_while_planning.append(list(pids))
        raise RuntimeError("the database went away while planning")
    monkeypatch.setattr(issue_rows, "_insert_pending", failing_insert)
    # The raised error is kept (with its traceback, which holds the send's frames) while we look: the worker must
    # go because the send closes it, not because the garbage collector happened to drop it.
    with SinkServer() as server, pytest.raises(RuntimeError, match="went away") as raised:
        send_through(server, engine, settings, digest_library, digest_schedule, encode_in_worker=True)
    assert len(seen_while_planning) == 1 and len(seen_while_planning[0]) == 1  # up before the rows were planned
    deadline = time.monotonic() + 10
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[0]) and raised.tb is not None
    with engine.connect() as conn:
        assert conn.execute(select(deliveries)).first() is None  # the planning transaction was rolled back
    engine.dispose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize("dies", ["before its first batch", "with batches in hand"])
def test_a_send_whose_worker_dies_builds_the_rest_itself_and_sends_each_recipient_once(
        dies, tmp_path, monkeypatch, caplog, settings, digest_library, digest_schedule):
    from pipeline.digests import batch_worker

    engine = make_engine(f"sqlite:///{tmp_path}/lost.db")
    add_subscribers(engine, 12_000)
    pids: dict[batch_worker.BatchWorker, int] = {}
    handed: list = []
    started, hand_over = batch_worker.BatchWorker.__init__, batch_worker.BatchWorker.submit

    def kill(worker) -> None:
        os.kill(pids[worker], signal.SIGKILL)
        deadline = time.monotonic() + 10  # until the sender knows: from then on, handing it a batch fails at once
        while not worker.lost and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.lost

    def tracked(self, *args, **kwargs):
        started(self, *args, **kwargs)
        pids[self] = self.pid
        if dies == "before its first batch":
            kill(self)

    def submit(self, *args, **kwargs):
        future = hand_over(self, *args, **kwargs)
        handed.append(future)
        if dies == "with batches in hand" and len(handed) == 3:
            kill(self)  # the third batch, at least, is still in the worker's hands
        return future
    monkeypatch.setattr(batch_worker.BatchWorker, "__init__", tracked)
    monkeypatch.setattr(batch_worker.BatchWorker, "submit", submit)
    with SinkServer() as server:
        report = send_through(server, engine, settings, digest_library, digest_schedule, encode_in_worker=True)
        sink = server.sink
    assert len(pids) == 1
    assert len(handed) == (0 if dies == "before its first batch" else 3)  # none handed over once it was known dead
    assert report.complete and report.sent_now == 12_000 and sink.problems == []
    assert len(sink.per_recipient) == 12_000 and max(sink.per_recipient.values()) == 1
    assert {r.state for r in rows(engine, report.issue_id).values()} == {"sent"}
    assert [r.getMessage() for r in caplog.records if getattr(r, "action", None) == "digest_worker_lost"] == [
        "the batch worker stopped; preparing batches in this process"]
    engine.dispose()


@pytest.mark.parametrize("in_worker", [False, True])
def test_an_address_sendgrid_cannot_take_fails_alone_and_its_batch_goes_out(in_worker, tmp_path, settings,
                                                                           digest_library, digest_schedule):
    engine = make_engine(f"sqlite:///{tmp_path}/ascii.db")
    with engine.begin() as conn:
        for i in range(1500):  # two requests; the odd one out sits in the first
            email = "zoë@example.org" if i == 10 else f"reader{i}@example.org"
            repository.upsert(conn, email=email, name="", topics=(), cadence="weekly", timezone="UTC",
                              at=AT - timedelta(days=30), status="confirmed", consent_source="test")
    with SinkServer() as server:
        report = send_through(server, engine, settings, digest_library, digest_schedule, encode_in_worker=in_worker)
        sink = server.sink
    assert sink.problems == [] and sink.requests == 2
    assert report.sent_now == 1499 and report.failed == 1 and len(sink.per_recipient) == 1499
    failed = [r for r in rows(engine, report.issue_id).values() if r.state == "failed"]
    assert [r.reason for r in failed] == [NON_ASCII_ADDRESS]
    engine.dispose()
