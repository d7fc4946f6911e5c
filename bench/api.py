"""REST API latency and throughput against a live Daphne with the real pipeline running.

    python bench/api.py [--quick] [--rate 200] [--seconds 25] [--clients 16]
    (make bench runs it with real services: DATABASE_URL and REDIS_URL)

The stack is the real one, on a fresh bench database (`<database>_bench`): the default
symbols (`seed_symbols`), one year of 1-minute bars for AAPL (`backfill --days 365`), a
Celery worker (`--pool solo`) and beat ticking every 0.5 s so the hot state in Redis is live,
and one Daphne process serving the API. The server runs with DEBUG=0 and the anonymous
throttle rate raised to MARKETFLUX_THROTTLE_ANON=1000000/s, so no request is throttled. The
throttle still runs on every request, as in production (apps/api/throttles.py: one Redis
round trip per request, a counter per client and window; --throttle changes the rate).
After the backfill the bench runs ANALYZE on the bar table, as autovacuum would soon after on
a live database.

For each endpoint, after a 2 s warm-up:

* open loop: requests are sent at a fixed arrival rate (200/s) whatever the server does,
  over a pool of keep-alive HTTP/1.1 connections (raw asyncio streams, one request in flight
  per connection); latency runs from each request's *scheduled* send time to the last byte
  of its answer, so a stall shows up in every request it delays (no coordinated omission).
  /bars?interval=1h, which one process here cannot serve 200 times a second, runs open loop
  at 10 requests/s as well: its latency when requests do not queue behind each other.
* closed loop: N clients (16), each sending its next request as soon as the previous one is
  answered, for about 10 s: the most this Daphne process serves of that endpoint.

`/health` (a plain Django view, no database or Redis) is the reference: what Daphne and
Django cost before any MarketFlux code runs. EXPLAIN (ANALYZE, BUFFERS) of the SQL that
`apps.market.selectors.bars_for_range` runs for 500 hourly bars shows the index use.

Everything shares one 2-core machine: the load client, Daphne, the worker, beat, PostgreSQL
and Redis. Writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.common import (
    CpuMeter,
    Stack,
    clear_app_redis_keys,
    drop_bench_database,
    http_json,
    machine_info,
    print_table,
    raise_open_files_limit,
    setup_django_with_bench_database,
    stack_env,
    summary,
    wait_until,
    write_results,
)

SYMBOL = "AAPL"
ENDPOINTS = [  # (name, path); /health first: the reference
    ("health", "/health"),
    ("price", f"/api/v1/stocks/{SYMBOL}/price"),
    ("indicators", f"/api/v1/stocks/{SYMBOL}/indicators"),
    ("overview", "/api/v1/market/overview"),
    ("bars_1h", f"/api/v1/stocks/{SYMBOL}/bars?interval=1h"),
    ("history", f"/api/v1/stocks/{SYMBOL}/history?limit=120"),  # last: 120 ticks by then
]
TARGETS_P99_MS = {"price": 10.0, "bars_1h": 50.0}  # issue 4 (/price: at 200 requests/s)
# Also run open loop at a light rate, for endpoints one process cannot serve 200 times a
# second: their latency when not queueing behind each other.
LIGHT_RATES = {"bars_1h": 10.0}
THROTTLE_ANON = "1000000/s"
TICK_INTERVAL = "0.5"
BACKFILL_DAYS = 365
POOL_SIZE = 32  # open-loop connections: enough for 160 ms of stall at 200/s
REQUEST_TIMEOUT = 10.0  # seconds from the scheduled send; later counts as an error


# --- A minimal keep-alive HTTP/1.1 client ----------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, one request at a time; reconnects after errors."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def get(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=2**22
            )
            self.opened += 1
        reader = self.reader
        self.writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = None, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = b"close" in value
        if chunked:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        elif length is not None:
            body = await reader.readexactly(length)
        else:
            body, close = await reader.read(), True
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


def request_bytes(host: str, port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
        f"User-Agent: marketflux-bench\r\n\r\n"
    ).encode()


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []  # ms, answered 200
        self.errors: Counter[str] = Counter()
        self.last_done = 0.0

    def error(self, what: str) -> None:
        self.errors[what] += 1


async def _one(conn: HttpConnection, request: bytes, tally: Tally, since: float,
               limit_s: float) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        status, _ = await asyncio.wait_for(conn.get(request), limit_s)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ValueError) as exc:  # fmt: skip
        conn.close()
        tally.error(type(exc).__name__)
        return
    done = loop.time()
    tally.last_done = done
    if status == 200:
        tally.latencies.append((done - since) * 1000.0)
    else:
        tally.error(f"http {status}")


async def open_loop(host: str, port: int, path: str, *, rate: float, seconds: float,
                    pool_size: int = POOL_SIZE) -> dict:  # fmt: skip
    """Requests at a fixed arrival rate; latency from each one's scheduled send time."""
    loop = asyncio.get_running_loop()
    request = request_bytes(host, port, path)
    pool: asyncio.Queue[HttpConnection] = asyncio.Queue()
    conns = [HttpConnection(host, port) for _ in range(pool_size)]
    for conn in conns:
        pool.put_nowait(conn)
    tally = Tally()

    async def fire(scheduled: float) -> None:
        deadline = scheduled + REQUEST_TIMEOUT
        try:
            conn = await asyncio.wait_for(pool.get(), max(0.001, deadline - loop.time()))
        except TimeoutError:
            tally.error("no free connection")
            return
        try:
            await _one(conn, request, tally, scheduled, max(0.001, deadline - loop.time()))
        finally:
            pool.put_nowait(conn)

    count = round(rate * seconds)
    t0 = loop.time() + 0.05
    tasks = []
    for i in range(count):
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(scheduled)))
    send_lag = loop.time() - (t0 + (count - 1) / rate)  # how late the last send went out
    await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)
    for conn in conns:
        conn.close()
    answered = len(tally.latencies) + sum(
        n for e, n in tally.errors.items() if e.startswith("http")
    )
    span = max(tally.last_done - t0, 1e-9)
    return {
        "path": path,
        "rate": rate,
        "seconds": seconds,
        "sent": count,
        "answered": answered,
        "ok": len(tally.latencies),
        "req_per_s": answered / span if answered else 0.0,
        "latency_ms": summary(tally.latencies) if tally.latencies else None,
        "errors": dict(tally.errors),
        "connections_opened": sum(c.opened for c in conns),
        "last_send_lag_ms": send_lag * 1000.0,
    }


async def closed_loop(host: str, port: int, path: str, *, clients: int, seconds: float) -> dict:
    """`clients` connections, each sending its next request once the last is answered."""
    loop = asyncio.get_running_loop()
    request = request_bytes(host, port, path)
    tally = Tally()
    stop_at = loop.time() + seconds
    conns = [HttpConnection(host, port) for _ in range(clients)]

    async def client(conn: HttpConnection) -> None:
        while loop.time() < stop_at:
            await _one(conn, request, tally, loop.time(), REQUEST_TIMEOUT)

    began = loop.time()
    await asyncio.wait_for(
        asyncio.gather(*(client(c) for c in conns)), seconds + REQUEST_TIMEOUT + 5
    )
    wall = loop.time() - began
    for conn in conns:
        conn.close()
    return {
        "clients": clients,
        "seconds": wall,
        "ok": len(tally.latencies),
        "req_per_s": len(tally.latencies) / wall,
        "latency_ms": summary(tally.latencies) if tally.latencies else None,
        "errors": dict(tally.errors),
    }


def _describe(name: str, body: bytes) -> dict:
    """What an answer held: how many items, so a figure is never about an empty answer."""
    data = orjson.loads(body)
    if "results" in data:
        items = data["count"]
    elif name == "overview":
        items = len(data["symbols"])
    else:
        items = 1
    return {"items": items, "bytes": len(body), "sample": _shorten(data)}


def _shorten(data: dict) -> dict:
    if "results" in data:
        return {**data, "results": data["results"][-2:]}
    return data


async def bench_endpoints(url: str, daphne_pid: int, stack: Stack, args) -> list[dict]:
    host, port = url.removeprefix("http://").split(":")
    port = int(port)
    out = []
    for name, path in ENDPOINTS:
        stack.check_alive()
        probe = HttpConnection(host, port)
        status, body = await probe.get(request_bytes(host, port, path))
        probe.close()
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")
        shape = _describe(name, body)
        print(f"  {name:<10} {path}: {shape['items']} items, {shape['bytes']:,} bytes", flush=True)
        await open_loop(host, port, path, rate=args.rate, seconds=args.warmup)
        meter = CpuMeter({"daphne": daphne_pid, "load_client": os.getpid()}).start()
        opened = await open_loop(host, port, path, rate=args.rate, seconds=args.seconds)
        opened["cpu_pct"] = meter.stop()
        light = None
        if name in LIGHT_RATES:
            meter = CpuMeter({"daphne": daphne_pid, "load_client": os.getpid()}).start()
            light = await open_loop(host, port, path, rate=LIGHT_RATES[name], seconds=args.seconds)
            light["cpu_pct"] = meter.stop()
        meter = CpuMeter({"daphne": daphne_pid, "load_client": os.getpid()}).start()
        closed = await closed_loop(
            host, port, path, clients=args.clients, seconds=args.closed_seconds
        )
        closed["cpu_pct"] = meter.stop()
        lat = opened["latency_ms"] or {}
        print(
            f"    open loop {opened['req_per_s']:.0f} req/s p50 {lat.get('p50', 0):.2f} ms "
            f"p99 {lat.get('p99', 0):.2f} ms errors {sum(opened['errors'].values())}; "
            f"closed loop {closed['req_per_s']:.0f} req/s",
            flush=True,
        )
        out.append(
            {"name": name, **shape, "open_loop": opened, "open_loop_light": light,
             "closed_loop": closed}
        )  # fmt: skip
    return out


# --- Seeding, EXPLAIN, the selector alone ----------------------------------------------------


def seed(days: int) -> dict:
    from io import StringIO

    from django.core.management import call_command

    began = time.perf_counter()
    call_command("seed_symbols", stdout=StringIO())
    wait_until(_backfill_available, timeout=1800, interval=10, what="the backfill command")
    out = StringIO()
    call_command("backfill", days=days, symbols=SYMBOL, stdout=out)
    line = out.getvalue().strip()
    print(f"  {line}", flush=True)
    from django.db import connection

    from apps.market.models import Bar

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Bar._meta.db_table}")

    bars = Bar.objects.filter(symbol_id=SYMBOL, interval="1m").count()
    return {"backfill": line, "bars_1m": bars, "seconds": time.perf_counter() - began}


def _backfill_available() -> bool:
    """Another engineer writes the backfill command; wait for it rather than replace it."""
    from django.core.management import get_commands

    if "backfill" in get_commands():
        return True
    print("  waiting for the backfill management command (apps/market/backfill.py)", flush=True)
    return False


def _has_price(url: str) -> bool:
    try:
        return http_json(f"{url}/api/v1/stocks/{SYMBOL}/price").get("price") is not None
    except OSError:
        return False


def explain_bars() -> dict:
    """The SQL bars_for_range runs for 500 hourly bars, captured, then EXPLAIN ANALYZEd."""
    from django.db import connection

    from apps.market import selectors

    captured: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        candles = selectors.bars_for_range(symbol=SYMBOL, interval="1h", limit=500)
    sql, params = next((q for q in reversed(captured) if "market_bar" in q[0]), captured[-1])
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = [row[0] for row in cursor.fetchall()]
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        selectors.bars_for_range(symbol=SYMBOL, interval="1h", limit=500)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {
        "sql": sql.strip(),
        "params": {k: str(v) for k, v in params.items()} if isinstance(params, dict) else params,
        "candles": len(candles),
        "plan": plan,
        "selector_in_process_ms": summary(times),
    }


# --- Main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=None, help="open loop per endpoint")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--closed-seconds", type=float, default=None)
    parser.add_argument("--days", type=int, default=BACKFILL_DAYS, help="backfilled history")
    parser.add_argument("--throttle", default=THROTTLE_ANON, help="MARKETFLUX_THROTTLE_ANON")
    args = parser.parse_args()
    args.seconds = args.seconds or (5.0 if args.quick else 25.0)
    args.closed_seconds = args.closed_seconds or (3.0 if args.quick else 10.0)
    args.warmup = 1.0 if args.quick else 2.0
    raise_open_files_limit()

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine_before = machine_info()
    print("setting up the bench database, symbols and a year of AAPL bars", flush=True)
    name = setup_django_with_bench_database()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    keep_logs = True
    try:
        seeded = seed(args.days)
        clear_app_redis_keys()
        env = stack_env(
            TICK_INTERVAL=TICK_INTERVAL, MARKETFLUX_THROTTLE_ANON=args.throttle, DEBUG="0"
        )
        with Stack(env, log_dir) as stack:
            stack.worker()
            stack.beat()
            url, daphne = stack.daphne()
            print(f"stack up: Daphne {url} (pid {daphne.pid}), worker, beat", flush=True)
            wait_until(
                lambda: stack.check_alive() or _has_price(url),
                timeout=90,
                what="the first live tick of AAPL (hot state)",
            )
            explain = explain_bars()
            print(f"running {len(ENDPOINTS)} endpoints at {args.rate:g} req/s", flush=True)
            results = asyncio.run(bench_endpoints(url, daphne.pid, stack, args))
            stack.check_alive()
            server_errors = stack.log_errors("daphne")
        keep_logs = False
    finally:
        drop_bench_database(name)
        if keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)

    report(results, explain, seeded, args, server_errors)
    write_results(
        "api",
        {
            "started": started,
            "machine_at_start": machine_before,
            "setup": {
                "server": "one Daphne process, DEBUG=0",
                "throttle_anon": args.throttle,
                "tick_interval": float(TICK_INTERVAL),
                "worker": "celery worker --pool solo, celery beat",
                "seeded": seeded,
                "open_loop": {
                    "rate": args.rate,
                    "seconds": args.seconds,
                    "pool": POOL_SIZE,
                    "warmup_seconds": args.warmup,
                },
                "closed_loop": {"clients": args.clients, "seconds": args.closed_seconds},
                "quick": args.quick,
            },
            "targets_p99_ms": TARGETS_P99_MS,
            "endpoints": results,
            "explain_bars_1h": explain,
            "server_errors_logged": server_errors,
        },
    )


def _verdict(name: str, p99: float | None) -> str:
    target = TARGETS_P99_MS.get(name)
    if target is None:
        return "-"
    if p99 is None:
        return f"< {target:g} ms: no data"
    return f"< {target:g} ms: {'met' if p99 < target else 'MISSED'}"


def report(results: list[dict], explain: dict, seeded: dict, args,
           server_errors: dict[str, int]) -> None:  # fmt: skip
    print(
        f"\nsetup: one Daphne process (DEBUG=0), Celery worker --pool solo + beat at "
        f"TICK_INTERVAL={TICK_INTERVAL} s, anonymous throttle raised to {args.throttle} "
        f"(never throttles; its Redis counter still runs), {seeded['bars_1m']:,} 1-minute bars "
        f"of {SYMBOL}. Client, server, worker, PostgreSQL and Redis share "
        f"{os.cpu_count()} cores (load average now "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}: other work on the machine counts "
        f"too)."
    )
    rows = []
    for r in results:
        runs = [(r["name"], r["open_loop"])]
        if r.get("open_loop_light"):
            light = r["open_loop_light"]
            runs.append((f"{r['name']} @{light['rate']:g}/s", light))
        for label, o in runs:
            lat = o["latency_ms"] or {}
            rows.append([
                label, r["items"], r["bytes"], o["sent"], o["req_per_s"],
                lat.get("p50", float("nan")), lat.get("p99", float("nan")),
                lat.get("max", float("nan")), sum(o["errors"].values()),
                o["cpu_pct"]["daphne"], _verdict(r["name"], lat.get("p99")),
            ])  # fmt: skip
    print_table(
        f"open loop: {args.rate:g} requests/s (unless the row says otherwise) for "
        f"{args.seconds:g} s per endpoint, latency from the scheduled send (keep-alive pool "
        f"of {POOL_SIZE})",
        ["endpoint", "items", "bytes", "sent", "req/s", "p50 ms", "p99 ms", "max ms",
         "errors", "daphne %cpu", "p99 target"],
        rows,
    )  # fmt: skip
    rows = []
    for r in results:
        c = r["closed_loop"]
        lat = c["latency_ms"] or {}
        rows.append([
            r["name"], c["req_per_s"], lat.get("p50", float("nan")),
            lat.get("p99", float("nan")), lat.get("max", float("nan")),
            sum(c["errors"].values()), c["cpu_pct"]["daphne"], c["cpu_pct"]["load_client"],
        ])  # fmt: skip
    print_table(
        f"closed loop: {args.clients} clients back to back for {args.closed_seconds:g} s "
        f"(max throughput of one Daphne process)",
        ["endpoint", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "daphne %cpu",
         "client %cpu"],
        rows,
    )  # fmt: skip
    errors = {r["name"]: r["open_loop"]["errors"] for r in results if r["open_loop"]["errors"]}
    if errors:
        print(f"\nopen-loop errors: {errors}")
    if server_errors:
        print(f"exceptions Daphne logged (outermost of each chain): {server_errors}")
    sel = explain["selector_in_process_ms"]
    print(
        f"\nEXPLAIN (ANALYZE, BUFFERS) of the 1h bars query ({explain['candles']} candles; "
        f"bars_for_range alone, in-process: p50 {sel['p50']:.1f} ms, p99 {sel['p99']:.1f} ms)"
    )
    print("  " + "\n  ".join(explain["sql"].splitlines()))
    print(f"  params: {explain['params']}")
    print("  " + "\n  ".join(explain["plan"]))


if __name__ == "__main__":
    main()
