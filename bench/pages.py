"""Dashboard first-paint time and the weight of the pages' own JavaScript and CSS.

    python bench/pages.py [--quick] [--requests 300] [--days 365]
    (make bench runs it with real services: DATABASE_URL and REDIS_URL)

The stack is the real one, on a fresh bench database (`<database>_bench`): the default
symbols (`seed_symbols`), a year of 1-minute bars for each of them (`backfill --days 365`),
a Celery worker (`--pool solo`) and beat ticking every 0.5 s so the hot state in Redis is
live, and one Daphne process (DEBUG=0) serving the pages.

For the market overview `/` and the symbol page `/stocks/AAPL/` (500 one-minute candles
embedded, anomaly markers, the live panel):

* over HTTP: one client on 127.0.0.1 requests the page back to back over a keep-alive
  connection, N times after a warm-up; the time runs from sending the request to the last
  byte of the HTML, which is everything the browser needs for the first paint except the
  (cached) static files;
* in process: the same page through Django's test Client in this process (no ASGI, no
  network): the view, its queries and the template; and the queries it makes.

Against the target: p99 < 300 ms. Then the bytes of each page's own JavaScript and CSS
(the module graph from its <script>/<link> tags, lightweight-charts excluded), raw and
gzipped, against the 50 KB budget. Everything shares one machine: the client, Daphne, the
worker, beat, PostgreSQL and Redis. Writes bench/results/pages.json.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import re
import shutil
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Stack,
    clear_app_redis_keys,
    drop_bench_database,
    http_json,
    machine_info,
    percentile,
    print_table,
    setup_django_with_bench_database,
    stack_env,
    wait_until,
    write_results,
)

PAGES = [("overview", "/"), ("symbol", "/stocks/AAPL/")]
TARGET_P99_MS = 300.0
BUDGET_BYTES = 50 * 1024
TICK_INTERVAL = "0.5"
BACKFILL_DAYS = 365
VENDOR_PREFIX = "/static/vendor/"


def stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def seed(days: int) -> dict:
    from django.core.management import call_command
    from django.db import connection

    from apps.market.models import Bar

    began = time.perf_counter()
    call_command("seed_symbols", stdout=StringIO())
    out = StringIO()
    call_command("backfill", days=days, stdout=out)  # every active symbol
    line = out.getvalue().strip()
    print(f"  {line}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Bar._meta.db_table}")
    bars = Bar.objects.filter(interval="1m").count()
    return {"backfill": line, "bars_1m": bars, "seconds": time.perf_counter() - began}


def over_http(url: str, path: str, *, count: int, warmup: int) -> dict:
    """Back-to-back GETs on one keep-alive connection; ms to the last byte of the HTML."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    times: list[float] = []
    size = 0
    for i in range(warmup + count):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Accept": "text/html"})
        answer = conn.getresponse()
        body = answer.read()
        elapsed = (time.perf_counter() - t0) * 1000.0
        if answer.status != 200:
            raise RuntimeError(f"{path} answered {answer.status}: {body[:300]!r}")
        if i >= warmup:
            times.append(elapsed)
        size = len(body)
    conn.close()
    return {"latency_ms": stats(times), "html_bytes": size}


def in_process(path: str, *, count: int, warmup: int) -> dict:
    """The page through Django's test Client: view, queries and template, no ASGI."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")  # outside the test runner: a real allowed host
    times: list[float] = []
    for i in range(warmup + count):
        t0 = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - t0) * 1000.0
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
        if i >= warmup:
            times.append(elapsed)
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    return {
        "latency_ms": stats(times),
        "queries": len(queries),
        "query_ms": sum(float(q["time"]) for q in queries) * 1000.0,
    }


_ASSET = re.compile(r'<(?:script[^>]+src|link[^>]+rel="stylesheet"[^>]+href)="(/static/[^"]+)"')
_IMPORT = re.compile(r'\bfrom\s+"(\./[^"]+)"|\bimport\s+"(\./[^"]+)"')


def own_assets(html: str) -> dict[str, int]:
    """The page's own JS and CSS files (following relative module imports), by size."""
    from django.contrib.staticfiles import finders

    pending = [u for u in _ASSET.findall(html) if not u.startswith(VENDOR_PREFIX)]
    seen: dict[str, int] = {}
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        path = finders.find(url.removeprefix("/static/"))
        if path is None:
            raise RuntimeError(f"{url} is not a static file")
        data = Path(path).read_bytes()
        seen[url] = len(data)
        if url.endswith(".js"):
            base = url.rsplit("/", 1)[0]
            for a, b in _IMPORT.findall(data.decode()):
                pending.append(f"{base}/{(a or b).removeprefix('./')}")
    return seen


def asset_weight(pages_html: dict[str, str]) -> dict:
    from django.contrib.staticfiles import finders

    per_page = {name: own_assets(html) for name, html in pages_html.items()}
    union: dict[str, int] = {}
    for files in per_page.values():
        union.update(files)
    gz = sum(
        len(gzip.compress(Path(finders.find(u.removeprefix("/static/"))).read_bytes()))
        for u in union
    )
    return {
        "per_page_bytes": {name: sum(files.values()) for name, files in per_page.items()},
        "files": dict(sorted(union.items())),
        "total_bytes": sum(union.values()),
        "total_gzip_bytes": gz,
        "budget_bytes": BUDGET_BYTES,
    }


def _has_price(url: str) -> bool:
    try:
        overview = http_json(f"{url}/api/v1/market/overview")
    except OSError:
        return False
    return all(s["price"] is not None for s in overview["symbols"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per page")
    parser.add_argument("--days", type=int, default=BACKFILL_DAYS, help="backfilled history")
    args = parser.parse_args()
    count = args.requests or (50 if args.quick else 300)
    warmup = 10 if args.quick else 30

    os.environ.setdefault("DEBUG", "0")  # as served: no query log, no debug pages
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine_before = machine_info()
    print(f"setting up the bench database, symbols and {args.days} days of bars", flush=True)
    name = setup_django_with_bench_database()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    keep_logs = True
    results: dict[str, dict] = {}
    try:
        seeded = seed(args.days)
        clear_app_redis_keys()
        with Stack(stack_env(TICK_INTERVAL=TICK_INTERVAL, DEBUG="0"), log_dir) as stack:
            stack.worker()
            stack.beat()
            url, daphne = stack.daphne()
            print(f"stack up: Daphne {url} (pid {daphne.pid}), worker, beat", flush=True)
            wait_until(lambda: stack.check_alive() or _has_price(url), timeout=90,
                       what="a live price for every symbol")  # fmt: skip
            time.sleep(10)  # the indicators warm up, the tick history grows past one batch
            html: dict[str, str] = {}
            for page, path in PAGES:
                stack.check_alive()
                http_run = over_http(url, path, count=count, warmup=warmup)
                local = in_process(path, count=count, warmup=warmup)
                results[page] = {"path": path, "http": http_run, "in_process": local}
                lat = http_run["latency_ms"]
                print(f"  {page:<9} {path}: HTTP p50 {lat['p50']:.1f} ms p99 {lat['p99']:.1f} "
                      f"ms; in process p50 {local['latency_ms']['p50']:.1f} ms, "
                      f"{local['queries']} queries", flush=True)  # fmt: skip
                conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port)
                conn.request("GET", path)
                html[page] = conn.getresponse().read().decode()
                conn.close()
            stack.check_alive()
            server_errors = stack.log_errors("daphne")
        keep_logs = False
    finally:
        drop_bench_database(name)
        if keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)

    weight = asset_weight(html)
    report(results, weight, seeded, count, server_errors)
    write_results(
        "pages",
        {
            "started": started,
            "machine_at_start": machine_before,
            "setup": {
                "server": "one Daphne process, DEBUG=0",
                "tick_interval": float(TICK_INTERVAL),
                "worker": "celery worker --pool solo, celery beat",
                "seeded": seeded,
                "requests_per_page": count,
                "warmup_requests": warmup,
                "client": "one keep-alive HTTP/1.1 connection on 127.0.0.1, back to back",
                "quick": args.quick,
            },
            "target_p99_ms": TARGET_P99_MS,
            "pages": results,
            "assets": weight,
            "server_errors_logged": server_errors,
        },
    )


def report(results: dict, weight: dict, seeded: dict, count: int, server_errors: dict) -> None:
    print(
        f"\nsetup: one Daphne process (DEBUG=0), Celery worker --pool solo + beat at "
        f"TICK_INTERVAL={TICK_INTERVAL} s, {seeded['bars_1m']:,} 1-minute bars stored; "
        f"{count} requests per page after a warm-up, one client back to back."
    )
    rows = []
    for page, r in results.items():
        for where in ("http", "in_process"):
            lat = r[where]["latency_ms"]
            rows.append([
                page, "HTTP (Daphne)" if where == "http" else "in process",
                lat["p50"], lat["p95"], lat["p99"], lat["max"],
                r["http"]["html_bytes"] if where == "http" else r[where]["queries"],
                f"< {TARGET_P99_MS:g} ms: {'met' if lat['p99'] < TARGET_P99_MS else 'MISSED'}",
            ])  # fmt: skip
    print_table(
        "first paint: time to the whole HTML",
        ["page", "where", "p50 ms", "p95 ms", "p99 ms", "max ms", "bytes / queries",
         "p99 target"],
        rows,
    )  # fmt: skip
    # The budget is what one page makes a browser load; all pages' files together are shown
    # for reference (a browser visiting every page loads each file once).
    print_table(
        "each page's own JavaScript and CSS (lightweight-charts excluded)",
        ["page", "bytes", "budget", "verdict"],
        [[name, size, BUDGET_BYTES, "met" if size < BUDGET_BYTES else "MISSED"]
         for name, size in weight["per_page_bytes"].items()]
        + [[f"all pages ({len(weight['files'])} files; gzip {weight['total_gzip_bytes']:,})",
            weight["total_bytes"], "", ""]],
    )  # fmt: skip
    if server_errors:
        print(f"exceptions Daphne logged (outermost of each chain): {server_errors}")


if __name__ == "__main__":
    main()
