"""REST latency and throughput through the served stack (nginx, granian), beside anchors.

    python bench/api.py [--quick] [--seconds 25] [--closed-seconds 10] [--connections 32]
                        [--before TREE]
    (make bench runs it with real services: DATABASE_URL and REDIS_URL)

The stack is `make run`'s serving (docs/operations.md#serving), on a fresh bench database
(`<database>_bench`): the default symbols (`seed_symbols`), one year of 1-minute bars for
AAPL (`backfill --days 365`, then ANALYZE), a Celery worker (`--pool solo`) and beat ticking
every 0.5 s so the hot state in Redis is live, the WSGI tier (granian,
MARKETFLUX_WEB_PROCESSES x MARKETFLUX_WEB_THREADS, defaults one per core x 4) behind
Debian's nginx with the configuration the launcher writes. Requests go through nginx, as a
user's do. DEBUG=0; the anonymous throttle rate is raised to 1000000/s so no request is
throttled, but its Redis counter still runs on every request.

For each endpoint, after a 2 s warm-up, the closed loop and then the open loops (an open
loop faster than the server leaves requests queued in it: the next measure waits until
/health answers within 0.2 s again):

* open loop: requests at fixed arrival rates (`/price` 200/s and 500/s, `/bars?interval=1h`
  100/s, the others 200/s) over a pool of keep-alive connections (raw asyncio streams, one
  request in flight per connection); latency runs from each request's *scheduled* send time
  to the last byte of its answer, so a stall shows in every request it delays (no
  coordinated omission);
* closed loop: wrk (Debian's package) with one thread and 32 connections for 10 s, each
  connection sending its next request when the last is answered: the most the stack
  serves. Without wrk, the Python client does it (and says so); it costs a core itself.

Then the anchors, closed loop on `/price` with the same wrk, in the same run:

* FastAPI on uvicorn (bench/anchors/fastapi_price.py), 1 and 2 processes: one Redis GET;
* plain Django (bench/anchors/django_price.py) on granian with MarketFlux's process counts:
  the same read with no middleware, no DRF;
* MarketFlux straight on granian (no nginx), and on gunicorn (gthread) with the same
  counts: the WSGI server choice.

With `--before TREE` (a checkout of the code before the serving work, e.g.
`git worktree add var/before 38f993b`), that tree's app on one Daphne process, as it was
served, is measured the same way on `/price` and `/bars`: the before of the before/after.

Everything shares one 2-core machine: the load client, nginx, the servers, the worker,
beat, PostgreSQL and Redis. Writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from apps.ops import launcher
from apps.ops.processes import free_port
from bench.common import (
    Stack,
    clear_app_redis_keys,
    drop_bench_database,
    http_json,
    http_ok,
    machine_info,
    print_table,
    raise_open_files_limit,
    setup_django_with_bench_database,
    stack_env,
    summary,
    wait_until,
    write_results,
)
from marketflux_site import serving

SYMBOL = "AAPL"
PRICE = f"/api/v1/stocks/{SYMBOL}/price"
BARS = f"/api/v1/stocks/{SYMBOL}/bars?interval=1h"
ENDPOINTS = [  # (name, path, open-loop rates); /health first: the reference
    ("health", "/health", [200.0]),
    ("price", PRICE, [200.0, 500.0]),
    ("indicators", f"/api/v1/stocks/{SYMBOL}/indicators", [200.0]),
    ("overview", "/api/v1/market/overview", [200.0]),
    ("bars_1h", BARS, [100.0]),
    ("history", f"/api/v1/stocks/{SYMBOL}/history?limit=120", [200.0]),  # last: 120 ticks by then
]
# The tracker's targets: (endpoint, open-loop rate) -> p99 ms; endpoint -> closed-loop req/s.
TARGETS_P99_MS = {("price", 200.0): 10.0, ("price", 500.0): 20.0, ("bars_1h", 100.0): 50.0}
TARGETS_CLOSED = {"price": 2000.0, "bars_1h": 300.0}
TARGET_FASTAPI_RATIO = 0.7
THROTTLE_ANON = "1000000/s"
TICK_INTERVAL = "0.5"
BACKFILL_DAYS = 365
POOL_SIZE = 64  # open-loop connections: 128 ms of stall at 500/s before requests wait for one
REQUEST_TIMEOUT = 10.0  # seconds from the scheduled send; later counts as an error
WRK = shutil.which("wrk")


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


# --- Closed loop with wrk -------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def wrk_closed_loop(url: str, *, connections: int, seconds: float) -> dict:
    """wrk -t1 -c<connections> -d<seconds> --latency: requests/s of 2xx answers, p50/p99."""
    out = subprocess.run(
        [WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
         "-H", "Accept: application/json", url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    wall = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors: dict[str, int] = {"http non-2xx": int(bad.group(1))} if bad else {}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        for kind, n in zip(("connect", "read", "write", "timeout"), socket_errors.groups(),
                           strict=True):  # fmt: skip
            if int(n):
                errors[kind] = int(n)
    ok_share = (total - errors.get("http non-2xx", 0)) / total if total else 0.0
    dist = {q: _ms(v) for q, v in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out,
                                               flags=re.MULTILINE)}  # fmt: skip
    return {
        "tool": "wrk",
        "clients": connections,
        "seconds": seconds,
        "requests": total,
        "req_per_s": wall * ok_share,
        "latency_ms": {"p50": dist.get("50"), "p99": dist.get("99")} if dist else None,
        "output": out,
        "errors": errors,
    }


def closed(url: str, path: str, args) -> dict:
    """The closed-loop measure of url+path: wrk when installed, else the Python client."""
    if WRK:
        return wrk_closed_loop(url + path, connections=args.connections,
                               seconds=args.closed_seconds)  # fmt: skip
    host, port = url.removeprefix("http://").split(":")
    result = asyncio.run(closed_loop(host, int(port), path, clients=args.connections,
                                     seconds=args.closed_seconds))  # fmt: skip
    return {"tool": "python", **result}


class TreeCpu:
    """CPU of a server: its process and every child (granian's and uvicorn's workers)."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)

    def _total(self) -> float:
        import psutil

        total = 0.0
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    def start(self) -> TreeCpu:
        self._t0, self._w0 = self._total(), time.monotonic()
        return self

    def stop(self) -> float:
        """Percent of one core."""
        return 100.0 * (self._total() - self._t0) / (time.monotonic() - self._w0)


class ClientCpu:
    """CPU of the load: this process (the Python client) and wrk, once it has exited (its
    rusage comes back to the parent when reaped; the stack's servers are not reaped)."""

    @staticmethod
    def _total() -> float:
        import resource

        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    def start(self) -> ClientCpu:
        self._t0, self._w0 = self._total(), time.monotonic()
        return self

    def stop(self) -> float:
        return 100.0 * (self._total() - self._t0) / (time.monotonic() - self._w0)


# --- The servers ------------------------------------------------------------------------------


def start_server(stack: Stack, name: str, args: list[str], url: str, *, python: bool = True,
                 cwd: Path | None = None, env: dict | None = None,
                 probe: str = "/health") -> int:  # fmt: skip
    """Start a server process and wait until `probe` answers; its pid."""
    proc = stack.start(name, args, python=python, cwd=cwd, env=env)
    wait_until(lambda: stack.check_alive() or http_ok(url + probe, timeout=2),
               timeout=90, what=f"{name} on {url}")  # fmt: skip
    return proc.pid


def start_web_tier(stack: Stack, env: dict[str, str]) -> tuple[str, int, str, int]:
    """granian (the WSGI tier) and nginx in front, as `make run` runs them; their URLs and
    pids (direct, proxied)."""
    web_port, proxy_port = free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    web_pid = start_server(stack, "web", serving.web_command("127.0.0.1", web_port)[1:],
                           web_url, env=env)  # fmt: skip
    nginx = launcher.find_nginx()
    if nginx is None:
        raise SystemExit("bench/api.py measures the stack behind nginx: apt-get install nginx")
    plan = launcher.Serving(
        proxy_port, nginx, wsgi_port=web_port, asgi_port=free_port(),
        asgi_processes=serving.asgi_processes(), web_processes=serving.web_processes(),
        web_threads=serving.web_threads(),
    )  # fmt: skip
    conf = launcher.write_nginx_config(plan, stack.log_dir / "nginx")
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    proxy_pid = start_server(
        stack, "proxy", [nginx, "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)],
        proxy_url, python=False,
    )  # fmt: skip
    return web_url, web_pid, proxy_url, proxy_pid


def anchors(stack: Stack, env: dict[str, str], args) -> list[dict]:
    """Each anchor server in turn, closed loop on /price, then stopped."""
    workers, threads = serving.web_processes(), serving.web_threads()
    wsgi_counts = ["--workers", str(workers), "--blocking-threads", str(threads)]
    plans = [
        ("FastAPI + uvicorn, 1 process", "fastapi1",
         ["-m", "uvicorn", "bench.anchors.fastapi_price:app", "--workers", "1",
          "--no-access-log", "--log-level", "warning"]),
        ("FastAPI + uvicorn, 2 processes", "fastapi2",
         ["-m", "uvicorn", "bench.anchors.fastapi_price:app", "--workers", "2",
          "--no-access-log", "--log-level", "warning"]),
        (f"plain Django on granian, {workers} x {threads}", "django",
         ["-m", "granian", "--interface", "wsgi", *wsgi_counts, "--no-access-log",
          "bench.anchors.django_price:application"]),
        (f"MarketFlux on granian, {workers} x {threads}, no proxy", "granian",
         ["-m", "granian", "--interface", "wsgi", *wsgi_counts, "--no-access-log",
          serving.WSGI_APP]),
        (f"MarketFlux on gunicorn gthread, {workers} x {threads}, no proxy", "gunicorn",
         ["-m", "gunicorn", "-k", "gthread", "--workers", str(workers), "--threads",
          str(threads), serving.WSGI_APP]),
    ]  # fmt: skip
    out = []
    for label, name, server in plans:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        bind = (["--host", "127.0.0.1", "--port", str(port)] if name != "gunicorn"
                else ["--bind", f"127.0.0.1:{port}"])  # fmt: skip
        pid = start_server(stack, name, [*server[:2], *bind, *server[2:]], url, env=env,
                           probe=PRICE)  # fmt: skip
        asyncio.run(open_loop("127.0.0.1", port, PRICE, rate=200, seconds=args.warmup))
        cpu = TreeCpu(pid).start()
        result = closed(url, PRICE, args)
        result["server_cpu_pct"] = cpu.stop()
        stack.stop(name)
        print(f"  {label}: {result['req_per_s']:,.0f} req/s", flush=True)
        out.append({"label": label, "name": name, "closed_loop": result})
    return out


def before(stack: Stack, env: dict[str, str], tree: Path, args) -> dict:
    """The app of `tree` (the code before) on one Daphne, as it was served: /price and
    /bars?interval=1h, closed loop and open loop at 200/s and 100/s."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    daphne_env = {**env, "PYTHONPATH": str(tree)}
    daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), serving.ASGI_APP]
    pid = start_server(stack, "before", daphne, url, cwd=tree, env=daphne_env)
    out = {"tree": str(tree), "server": "one Daphne process"}
    for name, path, rate in (("price", PRICE, 200.0), ("bars_1h", BARS, 100.0)):
        asyncio.run(open_loop("127.0.0.1", port, path, rate=rate, seconds=args.warmup))
        asyncio.run(drain("127.0.0.1", port))
        result = closed(url, path, args)  # first: see bench_endpoints
        cpu = TreeCpu(pid).start()
        opened = asyncio.run(open_loop("127.0.0.1", port, path, rate=rate, seconds=args.seconds,
                                       pool_size=POOL_SIZE))  # fmt: skip
        opened["server_cpu_pct"] = cpu.stop()
        opened["drained_s"] = asyncio.run(drain("127.0.0.1", port))
        out[name] = {"open_loop": opened, "closed_loop": result}
        print(f"  before, {name}: {result['req_per_s']:,.0f} req/s closed loop", flush=True)
    stack.stop("before")
    return out


async def drain(host: str, port: int, *, limit_s: float = 120.0) -> float:
    """Wait until the server answers /health within 0.2 s again (what an overloaded open
    loop left queued is done); the seconds it took."""
    began = time.monotonic()
    request = request_bytes(host, port, "/health")
    while time.monotonic() - began < limit_s:
        conn = HttpConnection(host, port)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(conn.get(request), 10)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            conn.close()
        if time.monotonic() - t0 < 0.2:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - began


async def bench_endpoints(url: str, pids: dict[str, int], stack: Stack, args) -> list[dict]:
    host, port = url.removeprefix("http://").split(":")
    port = int(port)
    out = []
    for name, path, rates in ENDPOINTS:
        stack.check_alive()
        probe = HttpConnection(host, port)
        status, body = await probe.get(request_bytes(host, port, path))
        probe.close()
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")
        shape = _describe(name, body)
        print(f"  {name:<10} {path}: {shape['items']} items, {shape['bytes']:,} bytes", flush=True)
        # Closed loop first: it never queues more than its connections. An open loop faster
        # than the server leaves requests queued in it after the client gives up (WSGI
        # threads finish what they took), so each is followed by a drain.
        await open_loop(host, port, path, rate=rates[0], seconds=args.warmup)
        await drain(host, port)
        cpus = {k: TreeCpu(pid).start() for k, pid in pids.items()}
        cpus["client"] = ClientCpu().start()
        closed_result = await asyncio.to_thread(closed, url, path, args)
        closed_result["cpu_pct"] = {k: meter.stop() for k, meter in cpus.items()}
        runs = []
        for rate in rates:
            cpus = {k: TreeCpu(pid).start() for k, pid in pids.items()}
            cpus["client"] = ClientCpu().start()
            opened = await open_loop(host, port, path, rate=rate, seconds=args.seconds)
            opened["cpu_pct"] = {k: meter.stop() for k, meter in cpus.items()}
            opened["drained_s"] = await drain(host, port)
            runs.append(opened)
        for o in runs:
            lat = o["latency_ms"] or {}
            print(
                f"    open loop at {o['rate']:g}/s: {o['req_per_s']:.0f} req/s, p50 "
                f"{lat.get('p50', 0):.2f} ms, p99 {lat.get('p99', 0):.2f} ms, errors "
                f"{sum(o['errors'].values())}", flush=True,
            )  # fmt: skip
        print(f"    closed loop: {closed_result['req_per_s']:,.0f} req/s", flush=True)
        out.append({"name": name, **shape, "open_loops": runs, "closed_loop": closed_result})
    return out


# --- Main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--seconds", type=float, default=None, help="each open-loop run")
    parser.add_argument("--closed-seconds", type=float, default=None)
    parser.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    parser.add_argument("--days", type=int, default=BACKFILL_DAYS, help="backfilled history")
    parser.add_argument("--throttle", default=THROTTLE_ANON, help="MARKETFLUX_THROTTLE_ANON")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of the code before, served by one Daphne")  # fmt: skip
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
            TICK_INTERVAL=TICK_INTERVAL, MARKETFLUX_THROTTLE_ANON=args.throttle, DEBUG="0",
            NUM_PROXIES="1",
        )  # fmt: skip
        with Stack(env, log_dir) as stack:
            stack.worker()
            stack.beat()
            web_url, web_pid, url, proxy_pid = start_web_tier(stack, env)
            print(f"stack up: nginx {url} -> granian {web_url}, worker, beat", flush=True)
            wait_until(
                lambda: stack.check_alive() or _has_price(url),
                timeout=90,
                what="the first live tick of AAPL (hot state)",
            )
            explain = explain_bars()
            print(f"closed loop by {'wrk' if WRK else 'the Python client (no wrk)'}", flush=True)
            pids = {"web": web_pid, "proxy": proxy_pid}
            results = asyncio.run(bench_endpoints(url, pids, stack, args))
            stack.check_alive()
            server_errors = stack.log_errors("web")
            print("anchors, closed loop on /price", flush=True)
            anchored = anchors(stack, env, args)
            was = before(stack, env, args.before.resolve(), args) if args.before else None
            stack.check_alive()
        keep_logs = False
    finally:
        drop_bench_database(name)
        if keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)

    verdicts = report(results, anchored, was, explain, seeded, args, server_errors)
    write_results(
        "api",
        {
            "started": started,
            "machine_at_start": machine_before,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "setup": {
                "server": (
                    f"nginx -> granian WSGI, {serving.web_processes()} processes x "
                    f"{serving.web_threads()} threads, DEBUG=0"
                ),
                "closed_loop_tool": "wrk -t1" if WRK else "python asyncio client",
                "throttle_anon": args.throttle,
                "tick_interval": float(TICK_INTERVAL),
                "worker": "celery worker --pool solo, celery beat",
                "seeded": seeded,
                "open_loop": {
                    "seconds": args.seconds,
                    "pool": POOL_SIZE,
                    "warmup_seconds": args.warmup,
                },
                "closed_loop": {"connections": args.connections, "seconds": args.closed_seconds},
                "quick": args.quick,
            },
            "targets": {
                "p99_ms": {f"{n}@{r:g}/s": v for (n, r), v in TARGETS_P99_MS.items()},
                "closed_loop_req_per_s": TARGETS_CLOSED,
                "price_over_fastapi": TARGET_FASTAPI_RATIO,
            },
            "verdicts": verdicts,
            "endpoints": results,
            "anchors": anchored,
            "before": was,
            "explain_bars_1h": explain,
            "server_errors_logged": server_errors,
        },
    )


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(results: list[dict], anchored: list[dict], was: dict | None, explain: dict,
           seeded: dict, args, server_errors: dict[str, int]) -> dict:  # fmt: skip
    """Print the tables; the targets' verdicts."""
    print(
        f"\nsetup: nginx -> granian ({serving.web_processes()} x {serving.web_threads()}, "
        f"DEBUG=0), Celery worker --pool solo + beat at TICK_INTERVAL={TICK_INTERVAL} s, "
        f"anonymous throttle raised to {args.throttle} (its Redis counter still runs), "
        f"{seeded['bars_1m']:,} 1-minute bars of {SYMBOL}. Client, proxy, servers, worker, "
        f"PostgreSQL and Redis share {os.cpu_count()} cores (load average now "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}: other work on the machine counts "
        f"too)."
    )
    verdicts: dict[str, str] = {}
    rows = []
    for r in results:
        for o in r["open_loops"]:
            lat = o["latency_ms"] or {}
            target = TARGETS_P99_MS.get((r["name"], o["rate"]))
            verdict = "-"
            if target is not None:
                verdict = f"< {target:g} ms: {_met(lat.get('p99', 1e9) < target)}"
                verdicts[f"{r['name']} p99 at {o['rate']:g}/s"] = verdict
            rows.append([
                r["name"], o["rate"], r["bytes"], o["req_per_s"], lat.get("p50", float("nan")),
                lat.get("p99", float("nan")), lat.get("max", float("nan")),
                sum(o["errors"].values()), o["cpu_pct"]["web"], o["cpu_pct"]["proxy"], verdict,
            ])  # fmt: skip
    print_table(
        f"open loop through nginx: {args.seconds:g} s per rate, latency from the scheduled "
        f"send (keep-alive pool of {POOL_SIZE})",
        ["endpoint", "rate/s", "bytes", "served/s", "p50 ms", "p99 ms", "max ms", "errors",
         "web %cpu", "nginx %cpu", "p99 target"],
        rows,
    )  # fmt: skip
    fastapi = {a["name"]: a["closed_loop"]["req_per_s"] for a in anchored}
    rows = []
    for r in results:
        c = r["closed_loop"]
        lat = c["latency_ms"] or {}
        target = TARGETS_CLOSED.get(r["name"])
        verdict = "-"
        if target is not None:
            verdict = f">= {target:,.0f}/s: {_met(c['req_per_s'] >= target)}"
            verdicts[f"{r['name']} closed loop"] = verdict
        rows.append([
            r["name"], c["req_per_s"], lat.get("p50", float("nan")), lat.get("p99", float("nan")),
            sum(c["errors"].values()), c["cpu_pct"]["web"], c["cpu_pct"]["proxy"],
            c["cpu_pct"]["client"], verdict,
        ])  # fmt: skip
    print_table(
        f"closed loop through nginx: {args.connections} connections for {args.closed_seconds:g} s "
        f"({'wrk -t1' if WRK else 'Python client'})",
        ["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "web %cpu", "nginx %cpu",
         "client %cpu", "target"],
        rows,
    )  # fmt: skip
    price = next(r["closed_loop"]["req_per_s"] for r in results if r["name"] == "price")
    rows = [["MarketFlux /price through nginx (above)", price, "", "1.00", ""]]
    for a in anchored:
        c = a["closed_loop"]
        rows.append([a["label"], c["req_per_s"], c["server_cpu_pct"],
                     f"{price / c['req_per_s']:.2f}" if c["req_per_s"] else "-",
                     sum(c["errors"].values())])  # fmt: skip
    print_table(
        "anchors, closed loop on /price (same tool and connections)",
        ["server", "req/s", "server %cpu", "MarketFlux ÷ this", "errors"],
        rows,
    )
    for name in ("fastapi1", "fastapi2"):
        if fastapi.get(name):
            ratio = price / fastapi[name]
            verdicts[f"price ÷ {name}"] = (
                f"{ratio:.2f} (>= {TARGET_FASTAPI_RATIO}: {_met(ratio >= TARGET_FASTAPI_RATIO)})"
            )
    if was:
        rows = []
        for name in ("price", "bars_1h"):
            o, c = was[name]["open_loop"], was[name]["closed_loop"]
            lat = o["latency_ms"] or {}
            rows.append([name, o["rate"], o["req_per_s"], lat.get("p50", float("nan")),
                         lat.get("p99", float("nan")), sum(o["errors"].values()),
                         c["req_per_s"]])  # fmt: skip
        print_table(
            f"before: {was['tree']} on one Daphne",
            ["endpoint", "rate/s", "served/s", "p50 ms", "p99 ms", "errors", "closed req/s"],
            rows,
        )  # fmt: skip
    print("\ntargets: " + "; ".join(f"{k}: {v}" for k, v in verdicts.items()))
    if server_errors:
        print(f"exceptions the WSGI tier logged (outermost of each chain): {server_errors}")
    sel = explain["selector_in_process_ms"]
    print(
        f"\nEXPLAIN (ANALYZE, BUFFERS) of the 1h bars query ({explain['candles']} candles; "
        f"bars_for_range alone, in-process: p50 {sel['p50']:.1f} ms, p99 {sel['p99']:.1f} ms)"
    )
    print("  " + "\n  ".join(explain["plan"]))
    return verdicts


if __name__ == "__main__":
    main()
