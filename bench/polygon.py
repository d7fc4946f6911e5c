"""The Polygon/Massive-compatible gateway (apps/polygon, docs/polygon.md) beside MarketFlux's
own doors, against a live Daphne with the real pipeline running.

    python bench/polygon.py [--quick] [--clients 500] [--duration 45] [--rounds 2]
                            [--repeats 3] [--rate 200] [--seconds 15]
    (make bench runs it with real services: DATABASE_URL and REDIS_URL)

The stack is bench/api.py's, on a fresh bench database (`<database>_bench`): the default
symbols, one year of 1-minute bars for AAPL (`backfill --days 365`, then ANALYZE), a Celery
worker (`--pool solo`) and beat ticking every 0.5 s (the default TICK_INTERVAL), and one
Daphne process (DEBUG=0, MARKETFLUX_PUBLIC_READ=1 so any key reads, the anonymous throttle
raised so nothing is throttled; it still runs on every request). Every figure has its
reference measured in the same run, on the same stack:

* **stream**: N clients (500) on the gateway's WebSocket `/stocks`, each doing the vendor's
  handshake (status `connected`, `{"action":"auth","params":KEY}`, `auth_success`) and
  subscribing to `T.*`; beside them N clients on our own `/ws/market` subscribed to "*".
  --rounds phases per door (2), in the order /ws/market, /stocks, /stocks, /ws/market, so
  neither always runs first. Every phase is bench/ws_fanout.py's `fanout_phase`, unchanged:
  delivered trades/s, latency (receive time minus the tick's scheduled time: a `T` event's
  `t` in ms, a tick's `ts`), first-client latency and fan-out spread, every stored tick of
  the window checked against every client (lost, duplicated, out of order), Daphne's memory
  per socket (meaningful for the first phase only: later ones reuse memory the one before
  freed) and CPU. The doors' median p50 and p99 are divided, gateway by /ws/market.
* **list_aggs**: a year of AAPL's 1-minute bars through the official client `massive`
  (`RESTClient(api_key=..., base=url).list_aggs("AAPL", 1, "minute", from, to,
  limit=50000)`), every page iterated, each row deserialized as the client does. The
  reference: the same rows from `/api/v1/stocks/AAPL/bars?interval=1m`, which pages by time
  (at most 5,000 newest bars before `end`; the next page ends where this one starts), read
  with the same HTTP library (urllib3) and JSON decoder (json); and, as the floor, a binary
  COPY of the same rows out of PostgreSQL. HTTP time (request to last byte) is kept apart
  from the client's own decoding. Each read runs --repeats times, alternating; the median
  run is reported.
* **last trade**: `/v2/last/trade/AAPL` open loop at 200 requests/s, exactly as bench/api.py
  measures `/price` (its open-loop client: latency from each request's scheduled send,
  32 keep-alive connections), beside `/health` (Django doing nothing) and
  `/api/v1/stocks/AAPL/price`; also with a key (`?apiKey=`, what the clients' Bearer header
  costs: a token lookup), open loop at a light 20 requests/s (latency without a queue),
  closed loop with 16 clients (the most one Daphne serves), and in process through Django's
  test Client (bench/pages.py's timing) with the SQL each one runs.

Everything shares one 2-core machine: the clients, Daphne, the worker, beat, PostgreSQL and
Redis. Loopback only; every phase is bounded in time; every process started here is stopped
on every way out. Writes bench/results/polygon.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench import api as api_bench
from bench import ws_fanout
from bench.common import (
    CpuMeter,
    Stack,
    clear_app_redis_keys,
    drop_bench_database,
    machine_info,
    print_table,
    raise_open_files_limit,
    setup_django_with_bench_database,
    stack_env,
    wait_until,
    write_results,
)

SYMBOL = api_bench.SYMBOL  # AAPL: the symbol with a year of bars
API_KEY = "x"  # any key reads with MARKETFLUX_PUBLIC_READ=1
AUTH = orjson.dumps({"action": "auth", "params": API_KEY}).decode()
SUBSCRIBE_TRADES = orjson.dumps({"action": "subscribe", "params": "T.*"}).decode()
AGGS_LIMIT = 50_000  # the vendor's largest page
BARS_LIMIT = 5_000  # /api/v1/.../bars' largest answer (apps/api/serializers.py LIMIT_MAX)
READ_TIMEOUT = 120.0  # s per HTTP request of the year's reads
REST_ENDPOINTS = [  # (name, path); /health first: the reference
    ("health", "/health"),
    ("price", f"/api/v1/stocks/{SYMBOL}/price"),
    ("last_trade", f"/v2/last/trade/{SYMBOL}"),
    ("last_trade_key", f"/v2/last/trade/{SYMBOL}?apiKey={API_KEY}"),
]
LIGHT_RATE = 20.0  # requests/s: latency when requests do not queue


# --- The gateway's WebSocket client (runs in ws_fanout's client processes) --------------------


class GatewayClient(ws_fanout._Client):
    """A `/stocks` client: the vendor's handshake, then `T` events counted as ws_fanout's
    client counts /ws/market ticks. A trade is known by its symbol and `q` (the tick's time
    in µs, as the stored tick's `ts`); its latency runs from `t` (that time in ms)."""

    async def handshake(self) -> None:
        """The vendor's: `connected`, auth with any key, then the subscription to `T.*`."""
        await self._until("connected")
        await self.ws.send(AUTH)
        await self._until("auth_success")
        await self.ws.send(SUBSCRIBE_TRADES)
        await self._until("success")

    async def _until(self, status: str) -> None:
        while True:
            for event in self._handle(await self.ws.recv()):
                if event.get("ev") != "status":
                    continue
                if event.get("status") == status:
                    return
                if event.get("status") in ("error", "auth_failed"):
                    raise RuntimeError(f"{event['status']}: {event.get('message')}")

    def _handle(self, raw: str | bytes) -> list[dict]:
        now = time.time()
        window = self.window
        self.frames += 1
        in_window = window.t0 <= now < window.t1
        self.frames_in_window += in_window
        events = orjson.loads(raw)
        for e in events:
            kind = e.get("ev")
            if kind != "T":
                label = f"status {e.get('status')}" if kind == "status" else str(kind)
                self.other[label] = self.other.get(label, 0) + 1
                continue
            self.ticks += 1
            self.ticks_in_window += in_window
            symbol, micros = e["sym"], e["q"]
            if micros <= self._last_ts.get(symbol, -1):
                self.out_of_order += 1
            self._last_ts[symbol] = micros
            epoch = micros / 1e6
            if epoch >= window.t1:
                self.after_window.add(symbol)
            elif window.t0 <= epoch:
                latency = now - e["t"] / 1000.0
                window.latencies.append(latency)
                key = (symbol, micros)
                self.got.append(key)
                first = window.first.get(key)
                if first is None or latency < first:
                    window.first[key] = latency
                if latency > window.last.get(key, -1.0):
                    window.last[key] = latency
        return events


def gateway_client_process(pipe, url: str, count: int, first_index: int) -> None:
    """ws_fanout's client process, its clients `GatewayClient`s. Its `_client_main` builds
    them from the module's `_Client`: swapped in this process only, which runs nothing else."""
    ws_fanout._Client = GatewayClient
    ws_fanout.client_process(pipe, url, count, first_index)


@contextlib.contextmanager
def _gateway_fleets():
    """While open, ws_fanout's fleets start `gateway_client_process` (its `ClientFleet`
    starts the module's `client_process`), so `fanout_phase` measures the gateway as it
    measures /ws/market, with not a line of it copied."""
    original = ws_fanout.client_process
    ws_fanout.client_process = gateway_client_process
    try:
        yield
    finally:
        ws_fanout.client_process = original


DOORS = {  # door: (label, path, how its clients subscribe)
    "market": ("/ws/market *", "/ws/market", '"*"'),
    "gateway": ("/stocks T.*", "/stocks", "T.*"),
}


def stream_phases(base: str, clients: int, *, rounds: int, symbols: list[str],
                  duration: float, stack: Stack, daphne_pid: int) -> dict:  # fmt: skip
    """`rounds` phases per door, in the order /ws/market, gateway, gateway, /ws/market, ...
    (so neither door always runs first); the latency ratio is of the doors' median p50s
    and p99s."""
    ws = base.replace("http://", "ws://", 1)
    order = []
    for r in range(rounds):
        order += ["market", "gateway"] if r % 2 == 0 else ["gateway", "market"]
    phases: dict[str, list[dict]] = {"market": [], "gateway": []}
    for i, door in enumerate(order, 1):
        _, path, topic = DOORS[door]
        print(f"\nstream {i}/{len(order)}: {path}, {clients} clients subscribed to {topic}",
              flush=True)  # fmt: skip
        fleets = _gateway_fleets() if door == "gateway" else contextlib.nullcontext()
        with fleets:
            result = ws_fanout.fanout_phase(
                f"{ws}{path}", clients, symbols=symbols, duration=duration, procs=1,
                stack=stack, daphne_pid=daphne_pid,
            )  # fmt: skip
        phases[door].append({"door": door, "order": i, **result})
    median = {
        door: {q: _median([p["latency_ms"][q] for p in runs]) for q in ("p50", "p99")}
        for door, runs in phases.items()
    }
    ratios = {q: _ratio(median["gateway"][q], median["market"][q]) for q in ("p50", "p99")}
    return {"clients": clients, "rounds": rounds, "order": order, **phases,
            "latency_median_ms": median, "latency_ratio": ratios}  # fmt: skip


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --- A year of minute bars: list_aggs, /bars, binary COPY ---------------------------------------


def year_window() -> tuple[datetime, datetime]:
    """[AAPL's first 1-minute bar, the start of a minute closed a few seconds ago): the same
    rows for every read, though the pipeline keeps adding bars."""
    from apps.market.models import Bar

    first = Bar.objects.filter(symbol_id=SYMBOL, interval="1m").order_by("ts").first().ts
    now = datetime.now(UTC) - timedelta(seconds=5)
    return first, now.replace(second=0, microsecond=0)


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


class _TimedRequests:
    """Wraps a urllib3 PoolManager's `request`: time to the last byte, pages, bytes."""

    def __init__(self, pool) -> None:
        self.pool, self.request = pool, pool.request
        self.seconds: list[float] = []
        self.bytes = 0
        pool.request = self

    def __call__(self, *args, **kwargs):
        began = time.perf_counter()
        answer = self.request(*args, **kwargs)  # preload_content: the whole body is read
        self.seconds.append(time.perf_counter() - began)
        self.bytes += len(answer.data)
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {answer.data[:300]!r}")
        return answer


def read_list_aggs(url: str, start: datetime, end: datetime) -> dict:
    """Every page of `list_aggs` over [start, end) with the official client."""
    import massive

    client = massive.RESTClient(api_key=API_KEY, base=url, read_timeout=READ_TIMEOUT)
    timed = _TimedRequests(client.client)
    began = time.perf_counter()
    rows, first, last, volume = 0, None, None, 0
    for agg in client.list_aggs(SYMBOL, 1, "minute", _ms(start), _ms(end) - 1, limit=AGGS_LIMIT):
        rows += 1
        first = agg.timestamp if first is None else first
        last = agg.timestamp
        volume += agg.volume
    total = time.perf_counter() - began
    client.client.clear()
    return _read_result("list_aggs", total, timed, rows, first, last, volume)


def read_bars(url: str, start: datetime, end: datetime) -> dict:
    """The same rows from /api/v1/.../bars?interval=1m, newest page first: each page is the
    5,000 newest bars before `end`, and the next one ends where it starts."""
    import urllib3

    pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=READ_TIMEOUT),
                               retries=False)  # fmt: skip
    timed = _TimedRequests(pool)
    iso = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    before = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    began = time.perf_counter()
    rows, first, last, volume = 0, None, None, 0
    while True:
        query = urlencode({"interval": "1m", "limit": BARS_LIMIT, "start": iso, "end": before})
        answer = pool.request("GET", f"{url}/api/v1/stocks/{SYMBOL}/bars?{query}",
                              headers={"Accept": "application/json"})  # fmt: skip
        candles = json.loads(answer.data)["results"]
        rows += len(candles)
        for candle in candles:
            volume += candle["volume"]
        if candles:
            last = last or _ms(datetime.fromisoformat(candles[-1]["ts"]))
            first = _ms(datetime.fromisoformat(candles[0]["ts"]))
            before = candles[0]["ts"]
        if len(candles) < BARS_LIMIT:
            break
    total = time.perf_counter() - began
    pool.clear()
    return _read_result("bars", total, timed, rows, first, last, volume)


def _read_result(door: str, total: float, timed: _TimedRequests, rows: int, first, last,
                 volume: int) -> dict:  # fmt: skip
    http = sum(timed.seconds)
    return {
        "door": door,
        "seconds": total,
        "http_seconds": http,
        "client_seconds": total - http,
        "rows": rows,
        "rows_per_s": rows / total,
        "pages": len(timed.seconds),
        "page_http_ms": [round(s * 1000.0, 1) for s in timed.seconds],
        "bytes": timed.bytes,
        "first_ms": first,
        "last_ms": last,
        "volume": volume,
    }


def read_copy(start: datetime, end: datetime) -> dict:
    """The floor: the same rows as binary COPY out of PostgreSQL (bytes only, not parsed)."""
    import psycopg

    select = (
        "SELECT ts, open, high, low, close, volume, trades FROM market_bar "
        "WHERE symbol_id = %s AND interval = '1m' AND ts >= %s AND ts < %s ORDER BY ts"
    )
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        rows, volume = conn.execute(
            "SELECT count(*), coalesce(sum(volume), 0) FROM market_bar "
            "WHERE symbol_id = %s AND interval = '1m' AND ts >= %s AND ts < %s",
            (SYMBOL, start, end),
        ).fetchone()
        size = 0
        began = time.perf_counter()
        with conn.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT BINARY)",
                                (SYMBOL, start, end)) as copy:  # fmt: skip
            for block in copy:
                size += len(block)
        total = time.perf_counter() - began
    return {
        "door": "binary COPY", "seconds": total, "http_seconds": None, "rows": rows,
        "rows_per_s": rows / total, "pages": 1, "bytes": size, "volume": int(volume),
    }  # fmt: skip


def year_phase(url: str, *, repeats: int, stack: Stack, daphne_pid: int) -> dict:
    start, end = year_window()
    print(f"\na year of {SYMBOL} 1-minute bars, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} "
          f"UTC, read {repeats} time(s) each", flush=True)  # fmt: skip
    runs: dict[str, list[dict]] = {"list_aggs": [], "bars": [], "copy": []}
    readers = [
        ("list_aggs", lambda: read_list_aggs(url, start, end)),
        ("bars", lambda: read_bars(url, start, end)),
        ("copy", lambda: read_copy(start, end)),
    ]
    for _ in range(repeats):
        for name, read in readers:
            stack.check_alive()
            meter = CpuMeter({"daphne": daphne_pid, "client": os.getpid()}).start()
            result = read()
            result["cpu_pct"] = meter.stop()
            runs[name].append(result)
            print(f"  {name:<9} {result['rows']:,} rows in {result['seconds']:.2f} s "
                  f"({result['pages']} pages)", flush=True)  # fmt: skip
    median = {name: _median_run(r) for name, r in runs.items()}
    same = {
        "rows": len({m["rows"] for m in median.values()}) == 1,
        "volume": len({m["volume"] for m in median.values()}) == 1,
        "first_last": (median["list_aggs"]["first_ms"], median["list_aggs"]["last_ms"])
        == (median["bars"]["first_ms"], median["bars"]["last_ms"]),
    }
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "repeats": repeats,
        "median": median,
        "runs": runs,
        "same_rows": same,
        "ratio_list_aggs_to_bars": {
            "seconds": median["list_aggs"]["seconds"] / median["bars"]["seconds"],
            "http_seconds": median["list_aggs"]["http_seconds"] / median["bars"]["http_seconds"],
        },
        "ratio_list_aggs_to_copy": median["list_aggs"]["seconds"] / median["copy"]["seconds"],
    }


def _median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return ordered[(len(ordered) - 1) // 2]


# --- The last trade, open and closed loop (bench/api.py's clients) ----------------------------


async def rest_phase(url: str, daphne_pid: int, stack: Stack, args) -> list[dict]:
    host, port = url.removeprefix("http://").split(":")
    port = int(port)
    out = []
    print(
        f"\nREST: {len(REST_ENDPOINTS)} endpoints, open loop at {args.rate:g} and "
        f"{LIGHT_RATE:g} requests/s, closed loop with {args.http_clients} clients",
        flush=True,
    )
    for name, path in REST_ENDPOINTS:
        stack.check_alive()
        probe = api_bench.HttpConnection(host, port)
        status, body = await probe.get(api_bench.request_bytes(host, port, path))
        probe.close()
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")
        await api_bench.open_loop(host, port, path, rate=args.rate, seconds=args.warmup)
        runs = {}
        for label, rate in (("open_loop", args.rate), ("open_loop_light", LIGHT_RATE)):
            meter = CpuMeter({"daphne": daphne_pid, "load_client": os.getpid()}).start()
            runs[label] = await api_bench.open_loop(host, port, path, rate=rate,
                                                    seconds=args.seconds)  # fmt: skip
            runs[label]["cpu_pct"] = meter.stop()
        meter = CpuMeter({"daphne": daphne_pid, "load_client": os.getpid()}).start()
        runs["closed_loop"] = await api_bench.closed_loop(
            host, port, path, clients=args.http_clients, seconds=args.closed_seconds
        )
        runs["closed_loop"]["cpu_pct"] = meter.stop()
        lat = runs["open_loop"]["latency_ms"] or {}
        print(f"  {name:<14} {path}: {len(body):,} bytes; open loop "
              f"{runs['open_loop']['req_per_s']:.0f} req/s p50 {lat.get('p50', 0):.1f} ms "
              f"p99 {lat.get('p99', 0):.1f} ms; closed loop "
              f"{runs['closed_loop']['req_per_s']:.0f} req/s", flush=True)  # fmt: skip
        out.append({"name": name, "path": path, "bytes": len(body),
                    "sample": orjson.loads(body), **runs})  # fmt: skip
    return out


def in_process(*, count: int, warmup: int) -> dict:
    """Each endpoint through Django's test Client in this process (no ASGI, no network):
    bench/pages.py's timing, and the SQL each request runs."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.pages import in_process as timed

    out = {}
    for name, path in REST_ENDPOINTS:
        with CaptureQueriesContext(connection) as queries:
            Client(HTTP_HOST="127.0.0.1").get(path)
        out[name] = {**timed(path, count=count, warmup=warmup),
                     "sql": [q["sql"] for q in queries]}  # fmt: skip
    return out


def rest_ratios(results: list[dict]) -> dict:
    """The last trade's p50/p99 (and closed-loop throughput) over /health's and /price's."""
    by = {r["name"]: r for r in results}

    def q(name: str, run: str, key: str) -> float | None:
        lat = by[name][run]["latency_ms"] if name in by else None
        return lat[key] if lat else None

    out = {}
    for name in ("last_trade", "last_trade_key"):
        for ref in ("health", "price"):
            out[f"{name}/{ref}"] = {
                f"{run}_{key}": _ratio(q(name, run, key), q(ref, run, key))
                for run in ("open_loop", "open_loop_light")
                for key in ("p50", "p99")
            } | {
                "closed_loop_req_per_s": _ratio(
                    by[name]["closed_loop"]["req_per_s"], by[ref]["closed_loop"]["req_per_s"]
                )
            }
    return out


# --- Main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--clients", type=int, default=None,
        help="WebSocket clients per door (default 500; 100 with --quick)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=None, help="s of each stream window")
    parser.add_argument("--rounds", type=int, default=None,
                        help="stream phases per door (default 2; 1 with --quick)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="reads of the year per door")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=None, help="open loop per endpoint")
    parser.add_argument("--http-clients", type=int, default=16, help="closed-loop HTTP clients")
    parser.add_argument("--days", type=int, default=api_bench.BACKFILL_DAYS)
    args = parser.parse_args()
    clients = args.clients or (100 if args.quick else 500)
    duration = args.duration or (10.0 if args.quick else 45.0)
    rounds = args.rounds or (1 if args.quick else 2)
    repeats = args.repeats or (1 if args.quick else 3)
    args.seconds = args.seconds or (4.0 if args.quick else 15.0)
    args.closed_seconds = 3.0 if args.quick else 8.0
    args.warmup = 1.0 if args.quick else 2.0
    raise_open_files_limit()

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine_before = machine_info()
    print(f"setting up the bench database, symbols and {args.days} days of {SYMBOL} bars",
          flush=True)  # fmt: skip
    # This process's settings as the stack's (its in-process requests are never throttled).
    os.environ["MARKETFLUX_THROTTLE_ANON"] = api_bench.THROTTLE_ANON
    os.environ["MARKETFLUX_PUBLIC_READ"] = "1"
    name = setup_django_with_bench_database()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-polygon-"))
    keep_logs = True
    try:
        seeded = api_bench.seed(args.days)
        from apps.market.models import Symbol

        symbols = sorted(Symbol.objects.filter(active=True).values_list("ticker", flat=True))
        clear_app_redis_keys()
        env = stack_env(TICK_INTERVAL=str(ws_fanout.TICK_INTERVAL), DEBUG="0")
        with Stack(env, log_dir) as stack:
            stack.worker()
            stack.beat()
            url, daphne = stack.daphne()
            print(f"stack up: Daphne {url} (pid {daphne.pid}), worker, beat; symbols {symbols}",
                  flush=True)  # fmt: skip
            wait_until(
                lambda: stack.check_alive() or ws_fanout._all_priced(url, symbols),
                timeout=90,
                what="the first live ticks of every symbol",
            )
            time.sleep(2.0)
            stream = stream_phases(
                url, clients, rounds=rounds, symbols=symbols, duration=duration, stack=stack,
                daphne_pid=daphne.pid,
            )  # fmt: skip
            year = year_phase(url, repeats=repeats, stack=stack, daphne_pid=daphne.pid)
            rest = asyncio.run(rest_phase(url, daphne.pid, stack, args))
            local = in_process(count=50 if args.quick else 300, warmup=20)
            stack.check_alive()
            server_errors = stack.log_errors("daphne")
        keep_logs = False
    finally:
        drop_bench_database(name)
        if keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)

    ratios = rest_ratios(rest)
    report(stream, year, rest, local, ratios, seeded, args)
    if server_errors:
        print(f"exceptions Daphne logged (outermost of each chain): {server_errors}")
    write_results(
        "polygon",
        {
            "started": started,
            "machine_at_start": machine_before,
            "setup": {
                "server": "one Daphne process, DEBUG=0, MARKETFLUX_PUBLIC_READ=1",
                "throttle_anon": api_bench.THROTTLE_ANON,
                "tick_interval": ws_fanout.TICK_INTERVAL,
                "symbols": symbols,
                "worker": "celery worker --pool solo, celery beat",
                "seeded": seeded,
                "stream": {
                    "clients": clients,
                    "window_seconds": duration,
                    "rounds": rounds,
                    "client": "websockets, compression off, one client process",
                },
                "year": {"repeats": repeats, "aggs_limit": AGGS_LIMIT, "bars_limit": BARS_LIMIT},
                "rest": {
                    "rate": args.rate,
                    "light_rate": LIGHT_RATE,
                    "seconds": args.seconds,
                    "pool": api_bench.POOL_SIZE,
                    "warmup_seconds": args.warmup,
                    "closed_loop_clients": args.http_clients,
                    "closed_loop_seconds": args.closed_seconds,
                },
                "quick": args.quick,
            },
            "stream": stream,
            "year_of_minute_bars": year,
            "last_trade": rest,
            "last_trade_ratios": ratios,
            "in_process": local,
            "server_errors_logged": server_errors,
        },
    )


def report(stream: dict, year: dict, rest: list[dict], local: dict, ratios: dict,
           seeded: dict, args) -> None:  # fmt: skip
    print(
        f"\nsetup: one Daphne process (DEBUG=0), Celery worker --pool solo + beat at "
        f"TICK_INTERVAL={ws_fanout.TICK_INTERVAL} s, {seeded['bars_1m']:,} 1-minute bars of "
        f"{SYMBOL}. Clients, server, worker, PostgreSQL and Redis share {os.cpu_count()} cores "
        f"(load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())})."
    )
    rows = []
    phases = sorted(stream["market"] + stream["gateway"], key=lambda p: p["order"])
    for p in phases:
        door = f"{p['order']}. {DOORS[p['door']][0]}"
        lat, first, spread = p["latency_ms"], p["first_receiver_latency_ms"], p["fanout_spread_ms"]
        rows.append([
            door, p["clients"], p["connected"], p["ticks_per_s_delivered"],
            p["frames_per_s_delivered"], lat["p50"], lat["p99"], lat["max"], first["p50"],
            first["p99"], spread["p99"],
            f"{p['clients_with_gaps']}/{p['missing_ticks']}/{p['duplicates']}/{p['out_of_order']}",
            p["rss_per_connection_kb"], p["cpu_pct"]["daphne"],
            sum(v for k, v in p["cpu_pct"].items() if k.startswith("clients")),
        ])  # fmt: skip
    r = stream["latency_ratio"]
    print_table(
        f"stream: {stream['clients']} clients per door, latency = receive time - tick time "
        f"(gateway / /ws/market, medians: p50 {_x(r['p50'])}, p99 {_x(r['p99'])}; KiB/conn "
        f"holds for the first phase only: later ones reuse memory freed by the one before)",
        ["door", "clients", "conn", "trades/s", "frames/s", "p50 ms", "p99 ms", "max ms",
         "1st p50", "1st p99", "spread p99", "gaps cl/lost/dup/ooo", "KiB/conn",
         "daphne %cpu", "client %cpu"],
        rows,
    )  # fmt: skip
    rows = []
    for m in year["median"].values():
        rows.append([
            m["door"], m["rows"], m["pages"], m["seconds"],
            m["http_seconds"] if m["http_seconds"] is not None else "-", m["rows_per_s"],
            m["bytes"] / 2**20, m["cpu_pct"]["daphne"],
        ])  # fmt: skip
    same = year["same_rows"]
    ra = year["ratio_list_aggs_to_bars"]
    print_table(
        f"a year of {SYMBOL} 1-minute bars (median of {year['repeats']}; list_aggs / bars: "
        f"{_x(ra['seconds'])} in all, {_x(ra['http_seconds'])} in HTTP; list_aggs / COPY "
        f"{_x(year['ratio_list_aggs_to_copy'])}; same rows {same['rows']}, same volume "
        f"{same['volume']}, same first/last {same['first_last']})",
        ["door", "rows", "pages", "total s", "HTTP s", "rows/s", "MiB", "daphne %cpu"],
        rows,
    )  # fmt: skip
    rows = []
    for e in rest:
        o, light, c = e["open_loop"], e["open_loop_light"], e["closed_loop"]
        lat, llat, clat = o["latency_ms"] or {}, light["latency_ms"] or {}, c["latency_ms"] or {}
        nan = float("nan")
        rows.append([
            e["path"], o["req_per_s"], lat.get("p50", nan), lat.get("p99", nan),
            sum(o["errors"].values()), llat.get("p50", nan), llat.get("p99", nan),
            c["req_per_s"], clat.get("p50", nan), clat.get("p99", nan),
            o["cpu_pct"]["daphne"], local[e["name"]]["latency_ms"]["p50"],
            local[e["name"]]["queries"],
        ])  # fmt: skip
    print_table(
        f"REST: open loop {args.rate:g}/s and {LIGHT_RATE:g}/s for {args.seconds:g} s each "
        f"(latency from the scheduled send), closed loop {args.http_clients} clients for "
        f"{args.closed_seconds:g} s",
        ["endpoint", f"{args.rate:g}/s served", "p50 ms", "p99 ms", "errors",
         f"{LIGHT_RATE:g}/s p50", f"{LIGHT_RATE:g}/s p99", "closed req/s", "closed p50",
         "closed p99", "daphne %cpu", "in-process p50", "queries"],
        rows,
    )  # fmt: skip
    rows = [
        [pair, _x(v["open_loop_p50"]), _x(v["open_loop_p99"]), _x(v["open_loop_light_p50"]),
         _x(v["open_loop_light_p99"]), _x(v["closed_loop_req_per_s"])]
        for pair, v in ratios.items()
    ]  # fmt: skip
    print_table(
        "REST ratios",
        ["pair", f"{args.rate:g}/s p50", f"{args.rate:g}/s p99", f"{LIGHT_RATE:g}/s p50",
         f"{LIGHT_RATE:g}/s p99", "closed req/s"],
        rows,
    )  # fmt: skip
    errors = {e["name"]: e["open_loop"]["errors"] for e in rest if e["open_loop"]["errors"]}
    if errors:
        print(f"\nopen-loop errors: {errors}")


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


if __name__ == "__main__":
    main()
