"""Benchmark the feeds stage on 10,000 synthetic articles.

    python benchmarks/feeds.py [--articles N] [--cold-only]

Prints human lines, then one JSON object on the last line.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.content.loader import load_topics  # noqa: E402
from pipeline.content.model import Article, Library, Source  # noqa: E402
from pipeline.feeds import build_site  # noqa: E402

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SITE = "https://digest.example.org"
WORDS = ("care team pain help rest talk family nurse doctor plan day sleep walk eat water friend "
         "question answer medicine dose side effect trial study hope time week month support group").split()


def synthetic_library(n: int) -> Library:
    topics, problems = load_topics(ROOT / "content" / "topics.yaml")
    assert not problems, problems
    ids = [t.id for t in topics]
    rng = random.Random(20261125)
    articles = []
    for i in range(n):
        paras = []
        for _ in range(3):
            words = [rng.choice(WORDS) for _ in range(48)]
            paras.append(" ".join(words).capitalize() + f". See **note {i}** and [more](https://example.org/{i}).")
        body = f"## Part {i}\n\n" + "\n\n".join(paras) + "\n\n- ask your team\n- write it down\n"
        publish = AT - timedelta(minutes=rng.randrange(1, 3 * 365 * 24 * 60))
        articles.append(Article(
            slug=f"article-{i:05d}", title=f"Article {i}: {rng.choice(WORDS)} & {rng.choice(WORDS)}",
            summary=" ".join(rng.choice(WORDS) for _ in range(25)) + ".",
            topics=tuple(rng.sample(ids, rng.choice((1, 1, 2)))), status="approved", publish_at=publish,
            sources=(Source(title=f"Source {i}", url=f"https://example.org/s/{i}"),),
            reviewed_by="Dr. Example Reviewer", reviewed_on=date(2026, 1, 1) + timedelta(days=i % 300),
            updated_at=publish + timedelta(days=2) if i % 5 == 0 else None,
            author="Editorial team" if i % 3 == 0 else None, body=body,
        ))
    return Library(topics=topics, articles=tuple(articles))


def timed(label: str, fn):
    start = time.perf_counter()
    report = fn()
    took = time.perf_counter() - start
    print(f"{label:<34} {took:7.3f} s   {report}")
    return took, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None, help="page-rendering processes (default: CPUs)")
    parser.add_argument("--dir", type=Path, default=ROOT / "var",
                        help="where to build (default: var/ in the project, on the same disk as public/)")
    args = parser.parse_args()
    library = synthetic_library(args.articles)
    print(f"{args.articles} synthetic articles over {len(library.topics)} topics")
    # File creation dominates a full build, and its cost depends on the disk: compare --dir /dev/shm.
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        public = Path(tmp) / "public"

        def build(lib: Library = library):
            return build_site(lib, at=AT, public_dir=public, site_url=SITE, templates_dir=ROOT / "templates",
                              workers=args.workers)

        full, _ = timed("full build (fresh dir, cold cache)", build)
        noop, r = timed("rebuild, nothing changed", build)
        assert r.skipped_fast
        edited = list(library.articles)
        newest = max(range(len(edited)), key=lambda i: edited[i].publish_at)
        edited[newest] = edited[newest].evolve(title=edited[newest].title + " (edited)")
        lib2 = Library(topics=library.topics, articles=tuple(edited))
        one, r = timed("rebuild, one article edited", lambda: build(lib2))
        assert r.pages_written >= 1 and not r.skipped_fast
        files = sum(1 for p in public.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in (public / "feeds").iterdir())
        print(f"{files} files; feeds total {size / 1e6:.2f} MB")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak RSS {peak:.0f} MB (this process; page workers are forkserver children and not included)")
    print(json.dumps({
        "articles": args.articles, "workers": args.workers, "dir": str(args.dir), "full_build_s": round(full, 3), "noop_rebuild_s": round(noop, 4),
        "one_change_rebuild_s": round(one, 3), "targets": {"full_build_s": 3.0, "noop_rebuild_s": 0.2},
        "peak_rss_mb": round(peak, 1),
    }))


if __name__ == "__main__":
    main()
