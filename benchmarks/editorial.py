"""Benchmark the editorial record on synthetic articles: what the feed job adds before each build.

    python benchmarks/editorial.py [--articles N] [--database-url URL]

First sync (every article a new revision and attestation), an unchanged sync (the usual 15-minute run), a sync
after 1% of the texts changed, and reading the live view. Prints human lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from feeds import AT, synthetic_library  # noqa: E402

from pipeline.editorial.live import live_articles  # noqa: E402
from pipeline.editorial.record import sync_files  # noqa: E402
from pipeline.store.engine import make_engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.database_url or f"sqlite:///{tmp}/bench.db")
        articles = list(synthetic_library(args.articles).articles)
        present = {a.slug for a in articles}
        figures = {"articles": len(articles)}

        def step(name: str, items) -> None:
            start = time.perf_counter()
            with engine.begin() as conn:
                report = sync_files(conn, items, present=present, at=AT, mode="attested")
            figures[name] = round(time.perf_counter() - start, 3)
            print(f"{name:<22} {figures[name]:8.3f} s   {report.summary()}")

        step("first_sync_s", articles)
        step("unchanged_sync_s", articles)
        edited = [replace(a, body=a.body + "\n\nOne more line.") if i % 100 == 0 else a for i, a in enumerate(articles)]
        step("one_percent_edited_s", edited)
        start = time.perf_counter()
        with engine.connect() as conn:
            live = live_articles(conn, at=AT, mode="attested")
        figures["live_view_s"] = round(time.perf_counter() - start, 3)
        print(f"{'live_view_s':<22} {figures['live_view_s']:8.3f} s   {len(live)} articles")
        engine.dispose()
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
