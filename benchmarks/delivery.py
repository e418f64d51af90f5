"""Delivery benchmark: plan, render and send one weekly issue to N synthetic subscribers through the SendGrid
backend, into a loopback SendGrid-compatible sink (its own process) that validates every request.

    python benchmarks/delivery.py --subscribers 1000000 [--database-url URL]

Prints progress on stderr and JSON last on stdout: subscribers, recipients, seconds, recipients_per_s,
peak_rss_mb (of the sending process), requests, baseline_seconds (naive: render per recipient and one API call
per recipient, measured on 2,000 and scaled) and floor_seconds (the same number of pre-serialised payloads of
the same size posted to the same sink).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.project import AT, make_project, topic_combos  # noqa: E402

KEY = "SG.benchmark-key"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- database setup ----------------------------------------------------------------------------------------------

def prepare_database(url: str | None, workdir: Path) -> tuple[str, callable]:
    if not url:
        return f"sqlite:///{workdir / 'bench.db'}", lambda: None
    if url.startswith("sqlite"):
        return url, lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False), drop


def populate(url: str, n: int) -> None:
    from sqlalchemy import insert

    from pipeline.store.engine import make_engine
    from pipeline.store.tables import subscribers

    engine = make_engine(url)
    combos = topic_combos()
    stamp = AT - timedelta(days=30)

    def row(i: int) -> tuple:
        email = f"reader{i}@example.org"
        cadence = "monthly" if i % 4 == 0 else "weekly"
        return (i, email, email, "", combos[i % len(combos)], cadence, "UTC", "confirmed", "import", stamp, stamp,
                stamp, 0)

    cols = ("id", "email", "email_key", "name", "topics", "cadence", "timezone", "status", "consent_source",
            "consent_at", "created_at", "updated_at", "token_version")
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY subscribers ({', '.join(cols)}) FROM STDIN") as copy:
                for i in range(1, n + 1):
                    copy.write_row(row(i))
            raw.commit()
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            chunk = []
            for i in range(1, n + 1):
                chunk.append(dict(zip(cols, row(i), strict=True)))
                if len(chunk) == 50_000:
                    conn.execute(insert(subscribers), chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(subscribers), chunk)
    engine.dispose()


# -- the measured send (run in its own process, so peak RSS is the sender's alone) -------------------------------

def settings_for(url: str, workdir: Path, sink_url: str):
    from pipeline.settings import Settings

    return Settings(database_url=url, delivery="sendgrid", sendgrid_api_key=KEY, sendgrid_host=sink_url,
                    secret_key="benchmark-secret-key-0123456789", site_url="https://digest.example.org",
                    content_dir=workdir / "content", schedules=workdir / "schedules.yaml",
                    templates_dir=ROOT / "templates", public_dir=workdir / "public", outbox=workdir / "outbox",
                    var_dir=workdir / "var")


def load(settings):
    from pipeline.content.loader import load_library
    from pipeline.schedules import require_schedule

    library, problems = load_library(settings.content_dir)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise SystemExit("\n".join(map(str, errors)))
    return library, require_schedule(settings.schedules, topic_ids=frozenset(library.topic_ids))


def run_send(url: str, workdir: Path, sink_url: str) -> dict:
    from pipeline.delivery.sendgrid import SendGridBackend
    from pipeline.digests.batch_worker import BatchWorker
    from pipeline.digests.send import send_digest
    from pipeline.store.engine import make_engine

    settings = settings_for(url, workdir, sink_url)
    library, schedule = load(settings)
    engine = make_engine(url)
    backend = SendGridBackend(KEY, host=sink_url, timeout=60)
    worker_usage: list[tuple[float, float]] = []
    close_worker = BatchWorker.close

    def close(self) -> None:  # the worker is the sender's grandchild: ask it for its own peak before it goes
        worker_usage.append(self.usage())
        close_worker(self)
    BatchWorker.close = close
    started = time.perf_counter()
    report = send_digest("weekly", at=AT, settings=settings, engine=engine, library=library, schedule=schedule,
                         backend=backend, write_archive=False)
    seconds = time.perf_counter() - started
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker, worker_cpu = max(worker_usage, default=(0.0, 0.0))
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "peak_rss_mb": round(peak, 1), "worker_peak_rss_mb": round(worker, 1),
            "cpu_s": round(own.ru_utime + own.ru_stime, 2), "worker_cpu_s": round(worker_cpu, 2),
            "sent": report.sent_now,
            "recipients": report.recipients, "variants": report.variants, "complete": report.complete,
            "client_requests": backend.requests}


def time_phases() -> dict[str, float]:
    """Wrap the send's phases with timers; returns the dict they add their seconds to. "wait" is the main
    thread waiting for the sending thread; "deliver" runs on the sending thread, overlapped."""
    import concurrent.futures
    import functools

    from pipeline.delivery import issue_rows, ledger, recovery
    from pipeline.digests import batches

    totals: dict[str, float] = {}

    def wrap(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def timed(*a, **k):
            started = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - started
        setattr(owner, name, timed)

    wrap(issue_rows, "open_issue", "open_issue")
    for name in ("claim_next", "post", "settle", "counts", "close_issue"):
        wrap(ledger, name, name)
    wrap(recovery, "recover_stale", "recover_stale")
    wrap(batches.BatchSender, "build", "build")
    wrap(batches.BatchSender, "deliver", "deliver")
    wrap(concurrent.futures.Future, "result", "wait (any thread)")
    return totals


# -- references -----------------------------------------------------------------------------------------------------

def baseline(url: str, workdir: Path, sink_url: str, sample: int = 2000) -> float:
    """Naive sender: render the email for each recipient, one API call per recipient. Seconds for ``sample``."""
    from pipeline.delivery.sendgrid import SendGridBackend
    from pipeline.digests.message import RecipientBuilder, issue_meta
    from pipeline.digests.plan import plan_issue
    from pipeline.digests.render import DigestRenderer
    from pipeline.subscribers.model import Subscriber, split_topics

    settings = settings_for(url, workdir, sink_url)
    library, schedule = load(settings)
    digest, job = schedule.digest("weekly"), schedule.job_for_digest("weekly")
    combos = topic_combos()
    people = [Subscriber(id=10_000_000 + i, email=f"naive{i}@example.org", name="", topics=split_topics(combos[i % 30]),
                         cadence="weekly", timezone="UTC", status="confirmed") for i in range(sample)]
    renderer = DigestRenderer(settings, library, digest)
    builder = RecipientBuilder(settings, digest, AT)
    backend = SendGridBackend(KEY, host=sink_url, timeout=60)
    started = time.perf_counter()
    for person in people:
        plan = plan_issue(library, digest, job, at=AT, subscribers=[person])
        key = plan.assignments.get(person.id)
        if key is None:
            continue
        rendered = renderer.render(plan, plan.variants[key])
        meta = issue_meta(digest, plan.fire_at, settings, 0)
        backend.send_batch(meta, rendered, [builder.build(person.id, person.email)])
    return time.perf_counter() - started


def floor(sink_url: str, workdir: Path, url: str, requests: int, recipients: int) -> float:
    """Post pre-serialised payloads of the real run's size to the sink: the transport and sink cost alone."""
    from pipeline.delivery.sendgrid_payload import BatchEncoder
    from pipeline.digests.message import RecipientBuilder, issue_meta
    from pipeline.digests.plan import plan_issue
    from pipeline.digests.render import DigestRenderer
    from pipeline.subscribers.model import Subscriber

    settings = settings_for(url, workdir, sink_url)
    library, schedule = load(settings)
    digest, job = schedule.digest("weekly"), schedule.job_for_digest("weekly")
    person = Subscriber(id=1, email="x@example.org", name="", topics=(), cadence="weekly", timezone="UTC",
                        status="confirmed")
    plan = plan_issue(library, digest, job, at=AT, subscribers=[person])
    key = next(iter(plan.variants))
    rendered = DigestRenderer(settings, library, digest).render(plan, plan.variants[key])
    builder = RecipientBuilder(settings, digest, AT)
    encoder = BatchEncoder(issue_meta(digest, plan.fire_at, settings, 1), rendered)
    per = max(1, recipients // max(1, requests))
    bodies = [encoder.encode([builder.build(20_000_000 + b * per + i, f"floor{b * per + i}@example.org")
                              for i in range(min(per, 1000))], f"b{b}")[0].encode() for b in range(4)]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    started = time.perf_counter()
    for i in range(requests):
        req = urllib.request.Request(f"{sink_url}/v3/mail/send", data=bodies[i % 4], headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
    return time.perf_counter() - started


def sink_stats(sink_url: str, reset: bool = False) -> dict:
    with urllib.request.urlopen(f"{sink_url}/{'reset' if reset else 'stats'}", timeout=30) as resp:
        return json.loads(resp.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    ap.add_argument("--baseline-sample", type=int, default=2000)
    ap.add_argument("--profile", metavar="FILE", help="write cProfile stats of the measured send to FILE")
    ap.add_argument("--phases", action="store_true", help="time the send's phases (ledger calls, build, waits)")
    ap.add_argument("--send-only", action="store_true", help="skip the baseline and floor references")
    ap.add_argument("--_send", nargs=3, metavar=("URL", "WORKDIR", "SINK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._send:
        phases = time_phases() if args.phases else None
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            result = prof.runcall(run_send, args._send[0], Path(args._send[1]), args._send[2])
            prof.dump_stats(args.profile)
        else:
            result = run_send(args._send[0], Path(args._send[1]), args._send[2])
        if phases is not None:
            result["phases"] = {k: round(v, 3) for k, v in sorted(phases.items())}
        print(json.dumps(result))
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    sink = subprocess.Popen([sys.executable, "-m", "tests.support.sendgrid_sink"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    sink_url = sink.stdout.readline().strip()
    url, drop = prepare_database(args.database_url, workdir)
    try:
        make_project(workdir)
        t0 = time.perf_counter()
        populate(url, args.subscribers)
        log(f"{args.subscribers} subscribers inserted in {time.perf_counter() - t0:.1f}s ({url.split(':')[0]})")
        sink_stats(sink_url, reset=True)
        extra = ["--profile", str(Path(args.profile).resolve())] if args.profile else []
        extra += ["--phases"] if args.phases else []
        out = subprocess.run([sys.executable, __file__, *extra, "--_send", url, str(workdir), sink_url], cwd=workdir,
                             stdout=subprocess.PIPE, text=True, check=True)
        sent = json.loads(out.stdout.strip().splitlines()[-1])
        stats = sink_stats(sink_url)
        log(f"send: {sent} sink: {stats}")
        recipients = max(1, stats["recipients"])
        baseline_seconds = floor_seconds = 0.0
        if not args.send_only:
            sink_stats(sink_url, reset=True)
            naive = baseline(url, workdir, sink_url, args.baseline_sample)
            baseline_seconds = naive * recipients / args.baseline_sample
            sink_stats(sink_url, reset=True)
            floor_seconds = floor(sink_url, workdir, url, stats["requests"], recipients)
        result = {
            "subscribers": args.subscribers,
            "database": url.split(":")[0].split("+")[0],
            "recipients": stats["recipients"],
            "seconds": round(sent["seconds"], 2),
            "recipients_per_s": round(stats["recipients"] / sent["seconds"]),
            "peak_rss_mb": sent["peak_rss_mb"],
            "worker_peak_rss_mb": sent["worker_peak_rss_mb"],
            "peak_rss_mb_sender_plus_worker": round(sent["peak_rss_mb"] + sent["worker_peak_rss_mb"], 1),
            "cpu_s": {"sender": sent["cpu_s"], "worker": sent["worker_cpu_s"], "sink": stats["cpu_s"]},
            "requests": stats["requests"],
            "duplicates": stats["duplicated"],
            "invalid_requests": len(stats["problems"]),
            "baseline_seconds": round(baseline_seconds, 1),
            "floor_seconds": round(floor_seconds, 2),
            "vs_floor": round(sent["seconds"] / floor_seconds, 2) if floor_seconds else None,
            "vs_baseline": round(baseline_seconds / sent["seconds"], 1) if baseline_seconds else None,
        }
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        drop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
