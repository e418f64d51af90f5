"""Benchmark: plan, render and send a weekly digest to 100,000 subscribers into the in-memory backend.

Compared, in the same run, with a naive baseline that renders the whole template (HTML, CSS inlining, text) and
builds an EmailMessage for every recipient, measured on a sample and scaled up.

    python benchmarks/digest.py [--subscribers 100000] [--sample 2000]

Prints human lines, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from pipeline.content.loader import load_topics  # noqa: E402
from pipeline.content.model import Article, Library, Source  # noqa: E402
from pipeline.delivery.memory import MemoryBackend  # noqa: E402
from pipeline.digests.message import RecipientBuilder, issue_meta  # noqa: E402
from pipeline.digests.plan import plan_issue  # noqa: E402
from pipeline.digests.render import DigestRenderer  # noqa: E402
from pipeline.digests.send import send_digest  # noqa: E402
from pipeline.schedules import Digest, Job, Schedule  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.engine import make_engine  # noqa: E402
from pipeline.store.tables import subscribers as t_sub  # noqa: E402
from pipeline.subscribers.model import Subscriber  # noqa: E402

AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
TARGET_SECONDS = 10
TARGET_RATIO = 20


def make_library() -> Library:
    topics, problems = load_topics(ROOT / "tests" / "fixtures" / "digest_content" / "topics.yaml")
    assert not problems, problems
    rng = random.Random(7)
    ids = [t.id for t in topics]
    articles = []
    for i in range(50):
        main = ids[i % len(ids)]
        extra = rng.choice(ids)
        articles.append(Article(
            slug=f"article-{i:02d}", title=f"Article {i}: what it means for you & your family",
            summary="A short, plain summary of the article, written for people living with MBC and their carers.",
            topics=(main,) if extra == main or i % 3 else (main, extra), status="approved",
            publish_at=AT - timedelta(hours=2 + i * 3),
            sources=(Source(title="A source page (Example Health)", url=f"https://health.example.org/s/{i}"),
                     Source(title="Another source (Example Society)", url=f"https://example.net/s/{i}")),
            reviewed_by="Dr Ada Example, oncologist", reviewed_on=date(2026, 11, 1),
            content_notes=("end-of-life",) if main == "hospice-end-of-life" else (),
        ))
    return Library(topics=topics, articles=tuple(articles))


def make_schedule() -> Schedule:
    digest = Digest(name="weekly", title="MBC Digest: this week", cadence="weekly", topics=None)
    job = Job(id="weekly-digest", task="send-digest", cron="0 8 * * mon", timezone="America/New_York",
              misfire_grace=timedelta(hours=6), digest="weekly")
    return Schedule(timezone="America/New_York", digests={"weekly": digest}, jobs=(job,))


def topic_choice(rng: random.Random, ids: list[str]) -> str:
    if rng.random() < 0.4:
        return ""  # the default topics
    return ";".join(sorted(rng.sample(ids, rng.randint(1, 3))))


def fill_subscribers(engine, n: int, ids: list[str]) -> None:
    rng = random.Random(42)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"id": i, "email": f"reader{i}@example.org", "email_key": f"reader{i}@example.org", "name": "",
             "topics": topic_choice(rng, ids), "cadence": "weekly", "timezone": "UTC", "status": "confirmed",
             "consent_source": "benchmark", "consent_at": created, "created_at": created, "updated_at": created,
             "token_version": 0} for i in range(1, n + 1)]
    with engine.begin() as conn:
        for i in range(0, n, 20_000):
            conn.execute(insert(t_sub), rows[i:i + 20_000])


def naive_seconds(settings: Settings, library: Library, schedule: Schedule, sample: int, ids: list[str]) -> float:
    """Render the whole template and build an EmailMessage per recipient, as a simple implementation would."""
    digest = schedule.digest("weekly")
    job = schedule.job_for_digest("weekly")
    rng = random.Random(42)
    subs = [Subscriber(id=i, email=f"reader{i}@example.org", name="", topics=tuple(t for t in topic_choice(rng, ids).split(";") if t),
                       cadence="weekly", timezone="UTC", status="confirmed") for i in range(1, sample + 1)]
    renderer = DigestRenderer(settings, library, digest)
    started = time.perf_counter()
    plan = plan_issue(library, digest, job, at=AT, subscribers=subs)
    builder = RecipientBuilder(settings, digest, plan.fire_at)
    meta = issue_meta(digest, plan.fire_at, settings)
    total = 0
    for sub in subs:
        key = plan.assignments.get(sub.id)
        if key is None:
            continue
        r = builder.build(sub.id, sub.email)
        ctx = renderer.context(plan, plan.variants[key].articles, web=False)
        ctx.update(unsubscribe_url=r.substitutions["-unsubscribe_url-"], preferences_url=r.substitutions["-preferences_url-"])
        html = renderer.inliner.inline(renderer.html_template.render(ctx))
        text = renderer.text_template.render(ctx)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = meta.sender
        msg["To"] = sub.email
        msg["Subject"] = ctx["title"]
        msg["Date"] = format_datetime(plan.fire_at)
        msg["Message-ID"] = r.message_id
        msg["List-Id"] = meta.list_id
        for k, v in r.headers.items():
            msg[k] = v
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        total += len(msg.as_bytes())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    args = parser.parse_args()

    library = make_library()
    schedule = make_schedule()
    ids = list(library.topic_ids)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(secret_key="benchmark-secret-key-0123456789", site_url="https://digest.example.org",
                            templates_dir=ROOT / "templates", public_dir=Path(tmp) / "public",
                            outbox=Path(tmp) / "outbox", database_url=f"sqlite:///{tmp}/bench.db")
        engine = make_engine(settings.database_url)
        t0 = time.perf_counter()
        fill_subscribers(engine, args.subscribers, ids)
        print(f"inserted {args.subscribers:,} subscribers in {time.perf_counter() - t0:.2f} s (setup, not timed)")

        backend = MemoryBackend(materialise=True, keep_bytes=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        report = send_digest("weekly", at=AT, settings=settings, engine=engine, library=library, schedule=schedule,
                             backend=backend)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        engine.dispose()
        assert report.complete and report.sent_now == len(backend.sent), report
        print(f"plan + render + ledger + send: {report.sent_now:,} messages ({report.variants} variants, "
              f"{report.skipped_empty:,} with nothing to read) in {seconds:.2f} s "
              f"({cpu:.2f} s CPU); {backend.bytes_total / 1e6:,.0f} MB of messages built")

        sample = min(args.sample, args.subscribers)
        naive = naive_seconds(settings, library, schedule, sample, ids)
        baseline = naive * args.subscribers / sample
        print(f"naive baseline: {sample:,} recipients in {naive:.2f} s, scaled to {args.subscribers:,}: {baseline:.1f} s")
    ratio = baseline / seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ok = seconds <= TARGET_SECONDS and ratio >= TARGET_RATIO
    print(f"speed-up: {ratio:.1f}x; peak RSS {peak:.0f} MB; targets ≤{TARGET_SECONDS} s and ≥{TARGET_RATIO}x: "
          + ("met" if ok else "NOT met"))
    print(json.dumps({"subscribers": args.subscribers, "variants": report.variants, "seconds": round(seconds, 3),
                      "baseline_seconds": round(baseline, 3), "ratio": round(ratio, 1), "peak_rss_mb": round(peak, 1),
                      "targets": {"seconds": TARGET_SECONDS, "ratio": TARGET_RATIO}}))


if __name__ == "__main__":
    main()
