"""Web benchmark over loopback: the app (uvicorn, one process) against `python -m http.server` as the floor.

Scenarios, each a fixed number of requests at a fixed concurrency:
  feed GET (identity and gzip), conditional feed GET answered 304, sign-up POST (with CSRF), and the same
  feed file from http.server. Sign-up rate limits are switched off for the run (PIPELINE_WEB_RATE_LIMITS=off),
  otherwise the 11th sign-up from 127.0.0.1 would get a 429.

Usage: python benchmarks/web.py [--requests 2000] [--concurrency 8]
Prints one line per scenario, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server for {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server for {url} did not start")


async def run(name: str, n: int, concurrency: int, make_request, expect: int) -> dict:
    latencies: list[float] = []
    bad = 0
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker():
            nonlocal bad
            for i in counter:
                start = time.perf_counter()
                r = await make_request(client, i)
                latencies.append(time.perf_counter() - start)
                if r.status_code != expect:
                    bad += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    result = {"requests": n, "concurrency": concurrency, "rps": round(n / wall, 1), "p50_ms": round(p50 * 1000, 2),
              "p99_ms": round(p99 * 1000, 2), "unexpected_status": bad}
    print(f"{name:28s} {result['rps']:9.1f} req/s   p50 {result['p50_ms']:7.2f} ms   p99 {result['p99_ms']:7.2f} ms"
          f"   unexpected {bad}", flush=True)
    return result


async def scenarios(app: str, floor: str, n: int, concurrency: int) -> dict:
    feed = "/feeds/all.rss.xml"
    identity = {"Accept-Encoding": "identity"}
    first = httpx.get(app + feed, headers=identity)
    etag = first.headers["etag"]
    results = {}
    results["app_feed_get"] = await run("app feed GET (identity)", n, concurrency,
                                        lambda c, i: c.get(app + feed, headers=identity), 200)
    results["app_feed_get_gzip"] = await run("app feed GET (gzip)", n, concurrency,
                                             lambda c, i: c.get(app + feed, headers={"Accept-Encoding": "gzip"}), 200)
    results["app_feed_304"] = await run("app conditional GET -> 304", n, concurrency,
                                        lambda c, i: c.get(app + feed, headers={**identity, "If-None-Match": etag}),
                                        304)
    results["floor_http_server_feed_get"] = await run("http.server feed GET (floor)", n, concurrency,
                                                      lambda c, i: c.get(floor + feed, headers=identity), 200)

    page = httpx.get(app + "/subscribe")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    cookies = dict(page.cookies)

    def signup(client, i):
        return client.post(app + "/subscribe", cookies=cookies, data={
            "csrf_token": token, "email": f"bench{i}@example.org", "topics": ["clinical-trials", "palliative-care"],
            "cadence": "weekly", "timezone": "America/Chicago"})

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # httpx warns about per-request cookies
        results["app_signup_post"] = await run("app sign-up POST (CSRF)", n, concurrency, signup, 200)
    results["feed_bytes"] = len(first.content)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from pipeline.content.loader import load_library
    from pipeline.feeds import build_site

    tmp = Path(tempfile.mkdtemp(prefix="web-bench-"))
    public = tmp / "public"
    app_port, floor_port = free_port(), free_port()
    app_url, floor_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{floor_port}"
    library, _ = load_library(ROOT / "content")
    build_site(library, at=datetime(2027, 3, 1, tzinfo=UTC), public_dir=public, site_url=app_url,
               templates_dir=ROOT / "templates", workers=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update({"PIPELINE_DATABASE_URL": f"sqlite:///{tmp}/bench.db", "PIPELINE_OUTBOX": str(tmp / "outbox"),
                "PIPELINE_PUBLIC_DIR": str(public), "PIPELINE_VAR_DIR": str(tmp / "var"),
                "PIPELINE_SITE_URL": app_url, "PIPELINE_SECRET_KEY": "bench-" + "k" * 40,
                "PIPELINE_WEB_RATE_LIMITS": "off", "PYTHONPATH": str(ROOT)})
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    app = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--host", "127.0.0.1", "--port", str(app_port)],
                           cwd=ROOT, env=env, **quiet)
    floor = subprocess.Popen([sys.executable, "-m", "http.server", str(floor_port), "--bind", "127.0.0.1",
                              "--directory", str(public)], cwd=tmp, **quiet)
    try:
        wait_up(app_url + "/healthz", app)
        wait_up(floor_url + "/", floor)
        print(f"# {args.requests} requests per scenario, concurrency {args.concurrency}, loopback, "
              f"one uvicorn worker, SQLite; sign-up rate limits off", flush=True)
        results = asyncio.run(scenarios(app_url, floor_url, args.requests, args.concurrency))
    finally:
        for proc in (app, floor):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    results["app_vs_floor_rps"] = round(results["app_feed_get"]["rps"] / results["floor_http_server_feed_get"]["rps"], 2)
    results["settings"] = {"requests": args.requests, "concurrency": args.concurrency, "rate_limits": "off"}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
