"""The market overview in Chromium at 5, 500 and 5,000 symbols: what the page costs the
server, the wire and the browser's main thread.

    python bench/dashboard.py [--quick] [--sizes 5,500,5000] [--live 30] [--profile 0]
    (make bench runs it with real services: DATABASE_URL and REDIS_URL)

For each size, on a fresh bench database (`<database>_bench`): the symbols (the five
defaults, then generated tickers with names and one of eleven sectors, as MARKETFLUX_SYMBOLS
and the admin would make them), a day of 1-minute bars for each (`backfill --days 1`, so
every sparkline has its 30 minutes), a Celery worker (`--pool solo`) and beat ticking every
0.5 s, one Daphne (`DEBUG=0`, static files collected into a temporary directory). Then:

* server: `/` requested back to back over one keep-alive connection (time to the last byte
  of the HTML, p50 and p99) and its bytes;
* Chromium (Debian's, headless, through Playwright; 1280 x 900): the page loaded live;
  first contentful paint; time to interactive (as Lighthouse defines it: the end of the
  last long task before the first 5 s without one, from the first paint on; "never" when
  no such window comes within the cap); the longest task of the load;
* then 30 s of live ticks without touching the page: main-thread busy % from long-task
  entries (tasks over 50 ms) and, beside it, from every task (CDP's TaskDuration); the
  longest task; the DOM's element count;
* then 5 s of scrolling the table (a script moves its scroll box 60 px every frame, back
  and forth; the page itself when the table has no box of its own): frames per second and
  the longest frame.

`--profile N` also records a CPU profile of the first N seconds after navigation at each
size, and another of the scrolling, and prints the functions with the most self time.
Everything shares one machine: the browser, Daphne, the worker, beat, PostgreSQL and Redis.
Writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BASE_DIR,
    Stack,
    clear_app_redis_keys,
    drop_bench_database,
    http_json,
    machine_info,
    print_table,
    setup_django_with_bench_database,
    stack_env,
    wait_until,
    write_results,
)
from bench.pages import over_http

SIZES = [5, 500, 5000]
TICK_INTERVAL = "0.5"
LIVE_SECONDS = 30.0
SCROLL_SECONDS = 5.0
QUIET_MS = 5000.0  # Lighthouse's quiet window for time to interactive
TTI_CAP_S = 120.0
FROZEN_S = 300.0  # a tab that does not answer for this long is reported frozen
LONG_TASK_MS = 50.0
VIEWPORT = {"width": 1280, "height": 900}
TARGETS = {  # the issue's, at 500 and 5,000 symbols
    500: {"page_kb": 150, "busy_pct": 20, "longest_ms": 50, "fps": 50},
    5000: {"busy_pct": 50, "longest_ms": 200},
}
# GICS sectors, with rough weights of how many symbols each holds.
SECTORS = [
    ("Information Technology", 14), ("Financials", 13), ("Health Care", 12),
    ("Industrials", 14), ("Consumer Discretionary", 11), ("Communication Services", 5),
    ("Consumer Staples", 7), ("Energy", 5), ("Utilities", 6), ("Real Estate", 6),
    ("Materials", 7),
]  # fmt: skip
SUFFIXES = ["Holdings Inc.", "Corporation", "Group plc", "Technologies Inc.", "Industries",
            "Capital Corp.", "Systems Inc.", "Brands Co."]  # fmt: skip

# Runs before the page's own scripts: keep every long task the browser reports.
LONG_TASKS = """
window.__bench = { longtasks: [] };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__bench.longtasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""

# True once a 5 s window without long tasks has followed the first paint (or the last long
# task after it); sets window.__bench.tti to that time.
QUIET = """([quiet]) => {
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  if (!fcp) return false;
  let candidate = fcp.startTime;
  const tasks = [...window.__bench.longtasks].sort((a, b) => a[0] - b[0]);
  for (const [start, duration] of tasks) {
    if (start >= candidate + quiet) break;
    if (start + duration > candidate) candidate = start + duration;
  }
  if (performance.now() < candidate + quiet) return false;
  window.__bench.tti = candidate;
  return true;
}"""

# Scrolls the table's box (or the page across the table) for `seconds`, 60 px a frame.
SCROLL = """async ([seconds]) => {
  const box = document.querySelector(".table-scroll");
  let el = box, lo = 0, hi = box ? box.scrollHeight - box.clientHeight : 0;
  if (hi < 10) {
    el = document.scrollingElement;
    const r = document.querySelector("table.symbols").getBoundingClientRect();
    lo = Math.max(0, r.top + scrollY - 100);
    hi = Math.max(lo, r.bottom + scrollY - innerHeight);
  }
  el.scrollTop = lo;
  return new Promise((resolve) => {
    let frames = 0, dir = 1, worst = 0, t0 = null, last = null;
    const step = (now) => {
      if (t0 === null) { t0 = last = now; }
      frames += 1;
      worst = Math.max(worst, now - last);
      last = now;
      let y = el.scrollTop + dir * 60;
      if (y >= hi) { y = hi; dir = -1; }
      if (y <= lo) { y = lo; dir = 1; }
      el.scrollTop = y;
      if (now - t0 < seconds * 1000) requestAnimationFrame(step);
      else resolve({ frames: frames - 1, seconds: (now - t0) / 1000, worst_frame_ms: worst,
                     distance_px: hi - lo, own_box: el === box });
    };
    requestAnimationFrame(step);
  });
}"""


def tickers(n: int) -> list[dict]:
    """The five defaults, then generated symbols: QAAA, QAAB, ... with a name and sector."""
    from apps.market.constants import DEFAULT_SYMBOLS

    out = [{"ticker": d["ticker"]} for d in DEFAULT_SYMBOLS][:n]
    weights = [w for _, w in SECTORS]
    i = 0
    while len(out) < n:
        a, b, c = i // 676, (i // 26) % 26, i % 26
        ticker = "Q" + "".join(chr(65 + x) for x in (a, b, c))
        digest = int(hashlib.blake2b(ticker.encode(), digest_size=4).hexdigest(), 16)
        name = f"{ticker.title()} {SUFFIXES[digest % len(SUFFIXES)]}"
        out.append({"ticker": ticker, "name": name, "sector": _sector(digest % sum(weights))})
        i += 1
    return out


def _sector(pick: int) -> str:
    """The sector a number below the weights' sum falls in."""
    for sector, weight in SECTORS:
        if pick < weight:
            return sector
        pick -= weight
    raise ValueError(pick)


def seed(n: int) -> dict:
    from django.core.management import call_command
    from django.db import connection

    from apps.market.models import Symbol
    from apps.market.services import symbols_seed

    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE market_symbol, market_tick, market_bar, indicators_indicatorsnapshot CASCADE"
        )
    specs = tickers(n)
    symbols_seed(tickers=[s["ticker"] for s in specs])
    named = {s["ticker"]: s for s in specs if "sector" in s}
    rows = list(Symbol.objects.filter(ticker__in=named))
    for row in rows:
        row.name, row.sector = named[row.ticker]["name"], named[row.ticker]["sector"]
    Symbol.objects.bulk_update(rows, ["name", "sector"], batch_size=1000)
    out = StringIO()
    call_command("backfill", days=1, stdout=out)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE market_bar")
    return {"symbols": n, "backfill": out.getvalue().strip(),
            "seconds": time.perf_counter() - began}  # fmt: skip


def collect_static(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE_DIR, env=env, check=True,
    )  # fmt: skip


def _all_priced(url: str) -> bool:
    try:
        overview = http_json(f"{url}/api/v1/market/overview", timeout=10)
    except OSError:
        return False
    return bool(overview["symbols"]) and all(s["price"] is not None for s in overview["symbols"])


def cpu_profile_top(profile: dict, count: int = 15) -> list[list]:
    """Self time per function of a V8 CPU profile, largest first."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    self_us: dict[str, float] = {}
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        frame = nodes[node_id]["callFrame"]
        url = frame["url"].rsplit("/", 1)[-1]
        where = f" {url}:{frame['lineNumber'] + 1}" if url else ""
        key = f"{frame['functionName'] or '(anonymous)'}{where}"
        self_us[key] = self_us.get(key, 0.0) + delta
    total = sum(self_us.values()) or 1.0
    top = sorted(self_us.items(), key=lambda kv: -kv[1])[:count]
    return [[name, us / 1000.0, 100.0 * us / total] for name, us in top]


def in_browser(url: str, *, live: float, profile_s: float) -> dict:
    """Chromium on the live page (started here: Playwright's sync API runs an event loop in
    this thread, and Django refuses database work in a thread that has one)."""
    from playwright.sync_api import sync_playwright

    from apps.testing.browser import CHROMIUM, LAUNCH_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            return _measure(browser, url, live=live, profile_s=profile_s)
        finally:
            browser.close()


def _responsive(page, seconds: float) -> bool:
    """Whether the page's main thread answers within `seconds` (Playwright's evaluate waits
    for ever on a frozen tab; a wait_for_function has a timeout)."""
    try:
        page.wait_for_function("() => true", timeout=seconds * 1000)
    except Exception:  # Playwright's TimeoutError
        return False
    return True


def _measure(browser, url: str, *, live: float, profile_s: float) -> dict:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.add_init_script(LONG_TASKS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    if profile_s:
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": 500})
        cdp.send("Profiler.start")
    out: dict = {"frozen": None, "live": None, "scroll": None, "page_errors": errors}
    began = time.monotonic()
    page.goto(f"{url}/", wait_until="commit", timeout=300_000)
    page.wait_for_function(
        "() => performance.getEntriesByName('first-contentful-paint').length",
        timeout=FROZEN_S * 1000, polling=100,
    )  # fmt: skip
    out["first_paint_ms"] = page.evaluate(
        "performance.getEntriesByName('first-contentful-paint')[0].startTime"
    )
    print(f"  first paint {out['first_paint_ms']:,.0f} ms", flush=True)
    if profile_s:
        page.wait_for_timeout(profile_s * 1000)
        out["profile_top"] = cpu_profile_top(cdp.send("Profiler.stop")["profile"])
    try:
        page.wait_for_function(QUIET, arg=[QUIET_MS], timeout=TTI_CAP_S * 1000, polling=250)
        out["interactive_ms"] = page.evaluate("window.__bench.tti")
    except Exception:  # Playwright's TimeoutError: never quiet within the cap
        out["interactive_ms"] = None
    if not _responsive(page, FROZEN_S):
        out["frozen"] = f"no answer {FROZEN_S:g} s after {time.monotonic() - began:.0f} s (load)"
        return out
    load_tasks = page.evaluate("window.__bench.longtasks")
    out["load_longest_task_ms"] = max((d for _, d in load_tasks), default=0.0)

    def task_seconds() -> float:
        metrics = cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "TaskDuration")

    t0 = page.evaluate("performance.now()")
    busy0 = task_seconds()
    page.wait_for_timeout(live * 1000)
    if not _responsive(page, FROZEN_S):
        out["frozen"] = f"no answer {FROZEN_S:g} s after {time.monotonic() - began:.0f} s (live)"
        return out
    t1 = page.evaluate("performance.now()")
    busy1 = task_seconds()
    tasks = page.evaluate("window.__bench.longtasks")
    window = t1 - t0
    overlap = [
        max(0.0, min(start + duration, t1) - max(start, t0))
        for start, duration in tasks
        if start + duration > t0 and start < t1
    ]
    durations = [d for s, d in tasks if s + d > t0 and s < t1]
    out["live"] = {
        "seconds": window / 1000.0,
        "long_tasks": len(durations),
        "busy_long_tasks_pct": 100.0 * sum(overlap) / window,
        "busy_all_tasks_pct": 100.0 * (busy1 - busy0) * 1000.0 / window,
        "longest_task_ms": max(durations, default=0.0),
    }
    out["dom_elements"] = page.evaluate("document.getElementsByTagName('*').length")
    if profile_s:
        cdp.send("Profiler.start")
    scroll = page.evaluate(SCROLL, [SCROLL_SECONDS])
    if profile_s:
        out["scroll_profile_top"] = cpu_profile_top(cdp.send("Profiler.stop")["profile"])
    scroll["fps"] = scroll["frames"] / scroll["seconds"] if scroll["seconds"] else 0.0
    out["scroll"] = scroll
    context.close()
    return out


def run_size(n: int, *, log_dir: Path, live: float, profile_s: float, requests: int) -> dict:
    print(f"\n{n} symbols: seeding and a day of 1-minute bars", flush=True)
    seeded = seed(n)
    print(f"  {seeded['backfill'][:100]}... ({seeded['seconds']:.0f} s)", flush=True)
    clear_app_redis_keys()
    static_dir = Path(tempfile.mkdtemp(prefix="bench-dashboard-var-"))
    env = stack_env(TICK_INTERVAL=TICK_INTERVAL, DEBUG="0", MARKETFLUX_VAR_DIR=str(static_dir))
    try:
        collect_static(env)
        with Stack(env, log_dir / str(n)) as stack:
            stack.worker()
            stack.beat()
            url, _ = stack.daphne()
            wait_until(lambda: stack.check_alive() or _all_priced(url), timeout=180,
                       what="a live price for every symbol")  # fmt: skip
            time.sleep(10)  # indicators warm up; the overview message has come a few times
            server = over_http(url, "/", count=requests, warmup=3)
            lat = server["latency_ms"]
            print(f"  / : {server['html_bytes']:,} bytes, p50 {lat['p50']:.0f} ms, "
                  f"p99 {lat['p99']:.0f} ms", flush=True)  # fmt: skip
            page = in_browser(url, live=live, profile_s=profile_s)
            stack.check_alive()
            errors = stack.log_errors("daphne")
    finally:
        shutil.rmtree(static_dir, ignore_errors=True)
    if page["frozen"]:
        print(f"  browser: frozen, {page['frozen']}", flush=True)
    else:
        live_ = page["live"]
        print(f"  browser: interactive {_ms(page['interactive_ms'])}, live busy "
              f"{live_['busy_long_tasks_pct']:.1f} % (all tasks {live_['busy_all_tasks_pct']:.1f} "
              f"%), longest {live_['longest_task_ms']:.0f} ms, scroll {page['scroll']['fps']:.0f} "
              "fps", flush=True)  # fmt: skip
    if page.get("profile_top"):
        print_table(f"CPU profile, first {profile_s:g} s at {n} symbols: self time",
                    ["function", "ms", "%"], page["profile_top"])  # fmt: skip
    if page.get("scroll_profile_top"):
        print_table(f"CPU profile while scrolling at {n} symbols: self time",
                    ["function", "ms", "%"], page["scroll_profile_top"])  # fmt: skip
    return {"symbols": n, "seeded": seeded, "server": server, "browser": page,
            "server_errors_logged": errors}  # fmt: skip


def _ms(value: float | None) -> str:
    return "never" if value is None else f"{value:,.0f} ms"


def report(runs: list[dict]) -> None:
    rows = []
    for r in runs:
        b, live, target = r["browser"], r["browser"]["live"], TARGETS.get(r["symbols"], {})
        frozen = "frozen" if b["frozen"] else ""
        rows.append([
            r["symbols"], f"{r['server']['html_bytes'] / 1024:,.1f}",
            f"{r['server']['latency_ms']['p50']:.0f} / {r['server']['latency_ms']['p99']:.0f}",
            f"{b['first_paint_ms']:,.0f}", _ms(b["interactive_ms"]).removesuffix(" ms"),
            f"{live['busy_long_tasks_pct']:.1f} ({live['busy_all_tasks_pct']:.1f})" if live
            else frozen, f"{live['longest_task_ms']:,.0f}" if live else frozen,
            f"{b['scroll']['fps']:.0f}" if b["scroll"] else frozen, b.get("dom_elements", ""),
            ", ".join(f"{k} {v}" for k, v in target.items()),
        ])  # fmt: skip
    print_table(
        "the market overview in Chromium (busy: long tasks, and all tasks in brackets)",
        ["symbols", "HTML KB", "server p50 / p99 ms", "first paint ms", "interactive ms",
         "busy %", "longest task ms", "scroll fps", "DOM elements", "targets"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 and 500 symbols, 10 s live")
    parser.add_argument("--sizes", default=None, help="comma-separated (default 5,500,5000)")
    parser.add_argument("--live", type=float, default=None, help="s of live ticks measured")
    parser.add_argument("--requests", type=int, default=20, help="timed requests of /")
    parser.add_argument("--profile", type=float, default=0.0,
                        help="s of CPU profile after navigation (0: none)")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(x) for x in (args.sizes or ("5,500" if args.quick else "5,500,5000")).split(",")]
    live = args.live or (10.0 if args.quick else LIVE_SECONDS)

    from apps.testing.browser import CHROMIUM, LAUNCH_ARGS

    os.environ.setdefault("DEBUG", "0")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine_before = machine_info()
    name = setup_django_with_bench_database()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    keep_logs = True
    runs = []
    try:
        for n in sizes:
            (log_dir / str(n)).mkdir()
            runs.append(run_size(n, log_dir=log_dir, live=live, profile_s=args.profile,
                                 requests=args.requests))  # fmt: skip
        keep_logs = False
    finally:
        drop_bench_database(name)
        if keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    report(runs)
    write_results(
        "dashboard",
        {
            "started": started,
            "machine_at_start": machine_before,
            "setup": {
                "server": "one Daphne process, DEBUG=0",
                "tick_interval": float(TICK_INTERVAL),
                "worker": "celery worker --pool solo, celery beat",
                "browser": f"{CHROMIUM} {' '.join(LAUNCH_ARGS)}, {VIEWPORT}",
                "live_seconds": live,
                "scroll_seconds": SCROLL_SECONDS,
                "quick": args.quick,
            },
            "targets": {str(k): v for k, v in TARGETS.items()},
            "runs": runs,
        },
    )
    print(json.dumps({"loadavg_end": machine_info().get("loadavg")}))


if __name__ == "__main__":
    main()
