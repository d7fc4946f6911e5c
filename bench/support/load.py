"""The soak's and the chaos run's shared load: the real processes of `make run` on a
PostgreSQL and a Redis of their own, 500 symbols ticking, WebSocket readers, REST load,
alert rules, a sampler every 10 s, and the checks against the Tick table at the end.

    with LoadRun(LoadConfig(), "soak") as run:
        run.start()
        time.sleep(seconds)        # or kill parts, as bench/chaos.py does
        outcome = run.finish()     # stops the load, then checks the stored record

What runs (docs/benchmarks.md#soak):

* embedded PostgreSQL (durable, as deployed) and Redis (`apps/ops/embedded.py`) under a
  temporary directory, so a SIGKILL here touches nobody else's server;
* the processes `make run` starts (`apps/ops/launcher.stack_children`): granian for HTTP
  (`serving.web_command`), N Daphne processes sharing one listening socket, the Celery
  worker (prefork, concurrency 2), beat, and `run_sources` (idle: no source is enabled),
  each restarted when it dies, with the launcher's backoff;
* 500 symbols ticking every 0.5 s, 2,000 alert rules on one user;
* readers (`bench/support/clients.py`): 200 `/ws/market` clients each subscribed to 10
  symbols (every symbol is watched by four clients) and 20 `/ws/stocks/{symbol}` clients;
* REST at 100 requests/s, open loop, across the endpoints of docs/contracts.md.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.common import BASE_DIR, RESULTS_DIR, _child_setup, percentile, raise_open_files_limit

TICK_INTERVAL = 0.5
SAMPLE_EVERY = 10.0  # s between samples
REPORT_EVERY = 5.0  # s between the client processes' reports
# After a part comes back a slot may still be lost
# (docs/operations.md#outages-of-redis-and-postgresql): a tick task that waited out the
# outage is dropped once 20 intervals late.
SETTLE_S = 20 * TICK_INTERVAL + 5.0
THROTTLE = "1000000/min"  # the load comes from one address; the API's throttle is not measured

# (name, path, weight, needs the token): the REST mix, per 100 requests.
ENDPOINTS = [
    ("price", "/api/v1/stocks/{symbol}/price", 30, False),
    ("indicators", "/api/v1/stocks/{symbol}/indicators", 12, False),
    ("history", "/api/v1/stocks/{symbol}/history?limit=120", 10, False),
    ("indicators_history", "/api/v1/stocks/{symbol}/indicators/history?limit=120", 5, False),
    ("bars", "/api/v1/stocks/{symbol}/bars?interval=1m&limit=500", 10, False),
    ("overview", "/api/v1/market/overview", 10, False),
    ("stocks", "/api/v1/stocks?page={page}&page_size=50", 10, False),
    ("alert_rules", "/api/v1/alerts/rules/?page_size=50", 5, True),
    ("alert_events", "/api/v1/alerts/events/?page_size=50", 5, True),
    ("health", "/health", 2, False),
    ("ready", "/ready", 1, False),
]


@dataclass
class LoadConfig:
    symbols: int = 500
    market_clients: int = 200
    symbols_per_market_client: int = 10
    stock_clients: int = 20
    rest_rate: float = 100.0
    alert_rules: int = 2000
    asgi_processes: int = 2
    reader_processes: int = 2
    sample_every: float = SAMPLE_EVERY

    @classmethod
    def quick(cls) -> LoadConfig:
        """The `--quick` runs' load: a check that everything works, not a measure."""
        return cls(symbols=50, market_clients=20, stock_clients=4, rest_rate=20.0,
                   alert_rules=200)  # fmt: skip

    def describe(self) -> dict:
        return {
            "symbols": self.symbols,
            "tick_interval_s": TICK_INTERVAL,
            "market_clients": self.market_clients,
            "symbols_per_market_client": self.symbols_per_market_client,
            "stock_clients": self.stock_clients,
            "rest_rate_per_s": self.rest_rate,
            "rest_mix": {name: weight for name, _, weight, _ in ENDPOINTS},
            "alert_rules": self.alert_rules,
            "asgi_processes": self.asgi_processes,
            "web": "granian (serving.web_command: one process per core, 4 threads)",
            "worker": "celery worker, prefork, --concurrency 2 (as make run)",
            "sample_every_s": self.sample_every,
        }


# --- The app's processes, supervised ----------------------------------------------------------


@dataclass
class Part:
    """One supervised process of the stack (several Daphne processes: several parts)."""

    name: str
    args: list[str]
    pass_fds: tuple[int, ...] = ()
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    starts: list[float] = field(default_factory=list)  # wall-clock times
    exits: list[tuple[float, int]] = field(default_factory=list)


class App:
    """The processes of `make run`, restarted when they die.

    `apps.ops.launcher.supervise` does this for `make run`, but its children inherit the
    launcher's environment and terminal and it never returns; here each part needs the
    bench's environment, a log file of its own and a loop that stops. The backoff is the
    launcher's: 1 s after a first failure, doubling while a part keeps dying, from scratch
    once it ran 60 s.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, asgi_processes: int):
        from apps.ops import processes
        from apps.ops.launcher import ASGI_APP, listen_socket
        from marketflux_site import serving

        self.env, self.log_dir = env, log_dir
        self.web_port = processes.free_port()
        self.asgi_port = processes.free_port()
        self._socket = listen_socket(self.asgi_port)
        fd = self._socket.fileno()
        py = sys.executable
        celery = [py, "-m", "celery", "-A", "marketflux_site"]
        self.parts = [Part("web", serving.web_command("127.0.0.1", self.web_port))]
        self.parts += [
            Part(f"asgi-{n}", [py, "-m", "daphne", "--fd", str(fd), ASGI_APP], pass_fds=(fd,))
            for n in range(1, asgi_processes + 1)
        ]
        self.parts += [
            Part("worker", [*celery, "worker", "--loglevel", "WARNING", "--concurrency", "2"]),
            Part(
                "beat",
                [
                    *celery,
                    "beat",
                    "--loglevel",
                    "WARNING",
                    "--schedule",
                    str(log_dir / "celerybeat-schedule"),
                ],
            ),
            Part("sources", [py, "manage.py", "run_sources"]),
        ]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.asgi_port}"

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def _start(self, part: Part) -> None:
        with open(self.log_dir / f"{part.name}.log", "ab") as log:
            part.proc = subprocess.Popen(
                part.args, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_child_setup, pass_fds=part.pass_fds,
            )  # fmt: skip
        part.started_at = time.monotonic()
        part.restart_at = None
        part.starts.append(time.time())

    def start(self) -> None:
        for part in self.parts:
            self._start(part)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                now = time.monotonic()
                for part in self.parts:
                    if part.restart_at is not None:
                        if now >= part.restart_at:
                            self._start(part)
                        continue
                    code = part.proc.poll() if part.proc else None
                    if code is None:
                        continue
                    part.exits.append((time.time(), code))
                    part.failures = 1 if now - part.started_at > 60 else part.failures + 1
                    part.restart_at = now + min(30.0, 2.0 ** (part.failures - 1))

    def kill(self, name: str) -> int:
        """SIGKILL a part and its process group (granian's and the worker's children too)."""
        with self._lock:
            proc = self.part(name).proc
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.pid

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {p.name: p.proc.pid for p in self.parts if p.proc and p.proc.poll() is None}

    def restarts(self) -> dict[str, int]:
        return {p.name: len(p.starts) - 1 for p in self.parts}

    def stop(self) -> None:
        from apps.ops.processes import stop_process

        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for part in reversed(self.parts):
            if part.proc is not None and part.proc.poll() is None:
                stop_process(part.proc, timeout=15, group=True)
        self._socket.close()

    def log_errors(self) -> dict[str, dict[str, int]]:
        from bench.common import Stack

        reader = Stack({}, self.log_dir)  # only its log parser
        out = {}
        for part in self.parts:
            errors = reader.log_errors(part.name)
            if errors:
                out[part.name] = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:8])
        return out


# --- Databases of its own ---------------------------------------------------------------------


class Servers:
    """PostgreSQL (durable: a SIGKILLed server must keep what it acknowledged, as deployed)
    and Redis (no persistence: killed, it comes back empty, the hard case for the app)."""

    def __init__(self, root: Path):
        from apps.ops.embedded import EmbeddedPostgres, EmbeddedRedis

        self.pg = EmbeddedPostgres(root / "pg", durable=True, database="soak")
        self.redis = EmbeddedRedis(root / "redis", durable=False)

    def start(self) -> tuple[str, str]:
        return self.pg.start(), self.redis.start()

    def kill(self, which: str) -> int:
        server = self.pg if which == "postgres" else self.redis
        pid = server.proc.pid
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        server.proc = None
        return pid

    def restart(self, which: str) -> None:
        """Start it again on its port; a killed PostgreSQL's orphaned backends hold its
        shared memory for a moment, and it refuses to start until they are gone."""
        server = self.pg if which == "postgres" else self.redis
        for attempt in range(60):
            try:
                server.start()
                return
            except RuntimeError:
                if attempt == 59:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        for server in (self.redis, self.pg):
            with contextlib.suppress(Exception):
                server.stop()


# --- Seeding -----------------------------------------------------------------------------------


def seed(config: LoadConfig) -> tuple[list[str], str]:
    """Symbols (the five defaults, then QAAA, QAAB, ...), the rules and their owner's token."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from apps.accounts import roles
    from apps.accounts.models import ApiToken
    from apps.accounts.tokens import api_token_create
    from apps.alerts import conditions as c
    from apps.alerts.models import AlertRule
    from apps.market.models import Symbol
    from apps.market.services import symbols_seed
    from bench.dashboard import tickers

    call_command("migrate", verbosity=0)
    symbols = [t["ticker"] for t in tickers(config.symbols)]
    symbols_seed(tickers=symbols)
    prices = dict(Symbol.objects.values_list("ticker", "start_price"))
    # An analyst (keeps alert rules) whose token reads them (docs/security.md).
    owner = roles.user_role_set(user=get_user_model().objects.create_user("soak"),
                                role=roles.ANALYST)  # fmt: skip
    _, token = api_token_create(user=owner, name="soak", scopes=[ApiToken.READ])
    rng = random.Random(21)
    codes = list(c.CONDITIONS)
    rules = []
    for i in range(config.alert_rules):
        symbol = symbols[i % len(symbols)]
        condition = codes[i % len(codes)]
        kind = c.CONDITIONS[condition].threshold
        price = prices[symbol]
        threshold = {
            "price": price * rng.uniform(0.98, 1.02),
            "percent": rng.uniform(0.1, 1.0),
            "rsi": rng.choice([rng.uniform(25, 45), rng.uniform(55, 75)]),
            "multiple": rng.uniform(1.5, 3.0),
            "": None,
        }[kind]
        every_time = rng.random() < 0.5
        rules.append(AlertRule(
            owner=owner, symbol_id=symbol, condition=condition, threshold=threshold,
            window_seconds=rng.choice([60, 300]) if c.CONDITIONS[condition].needs_window
            else None,
            frequency=c.EVERY_TIME if every_time else c.ONCE_PER_BAR,
            cooldown_seconds=rng.choice([30, 60]) if every_time else 0,
        ))  # fmt: skip
    AlertRule.objects.bulk_create(rules, batch_size=1000)
    return symbols, token


# --- The run -----------------------------------------------------------------------------------


class LoadRun:
    """Everything above, started by `start()`, sampled by a thread, always stopped."""

    def __init__(self, config: LoadConfig, name: str):
        self.config, self.name = config, name
        self.root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.log_dir = self.root / "logs"
        self.log_dir.mkdir()
        self.servers = Servers(self.root)
        self.app: App | None = None
        self.samples: list[dict] = []
        self.events: list[dict] = []  # kills, restarts of servers: drawn on the charts
        self._readers: list[tuple[multiprocessing.Process, object]] = []
        self._rest: tuple[multiprocessing.Process, object] | None = None
        self._reports: dict[str, list[dict]] = {"readers": [], "rest": []}
        self._finals: dict[str, list] = {"readers": [], "rest": []}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cpu: dict[int, float] = {}
        self._connected: dict[int, int] = {}
        self.keep_logs = True

    def __enter__(self) -> LoadRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- start ---

    def start(self) -> None:
        raise_open_files_limit()
        db_url, redis_url = self.servers.start()
        self.db_url, self.redis_url = db_url, redis_url
        os.environ.update(
            DATABASE_URL=db_url, REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url,
            TICK_INTERVAL=str(TICK_INTERVAL),
        )  # fmt: skip
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketflux_site.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        import django

        django.setup()
        print(f"{self.name}: PostgreSQL {db_url}, Redis {redis_url}; seeding", flush=True)
        began = time.monotonic()
        self.symbols, self.token = seed(self.config)
        from django.db import connections

        connections.close_all()
        print(f"  {len(self.symbols)} symbols, {self.config.alert_rules} rules "
              f"({time.monotonic() - began:.0f} s)", flush=True)  # fmt: skip
        env = dict(os.environ)
        env.update(DEBUG="0", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
                   MARKETFLUX_THROTTLE_ANON=THROTTLE, MARKETFLUX_THROTTLE_USER=THROTTLE,
                   MARKETFLUX_WS_PORT="")  # fmt: skip
        self.app = App(env, self.log_dir, self.config.asgi_processes)
        self.app.start()
        from bench.common import http_ok, wait_until

        wait_until(lambda: http_ok(f"{self.app.web_url}/ready", timeout=2), timeout=120,
                   what="/ready answering 200")  # fmt: skip
        print(f"  stack ready: web {self.app.web_url}, ASGI {self.app.ws_url}", flush=True)
        self._start_clients()
        self.t0 = time.time()
        self._cpu_times()  # the first reading, so the first sample has CPU percentages
        sampler = threading.Thread(target=self._sampler, daemon=True)
        sampler.start()
        self._threads.append(sampler)

    def _start_clients(self) -> None:
        from bench.support.clients import readers_process, rest_process

        ctx = multiprocessing.get_context("spawn")
        rng = random.Random(3)
        specs = []
        per = self.config.symbols_per_market_client
        order = list(self.symbols)
        for i in range(self.config.market_clients):
            if i * per % len(order) == 0:
                rng.shuffle(order)
            start = i * per % len(order)
            specs.append((i, "market", f"{self.app.ws_url}/ws/market",
                          order[start : start + per]))  # fmt: skip
        for k in range(self.config.stock_clients):
            symbol = self.symbols[k % len(self.symbols)]
            specs.append((self.config.market_clients + k, "stocks",
                          f"{self.app.ws_url}/ws/stocks/{symbol}", [symbol]))  # fmt: skip
        n = self.config.reader_processes
        for j in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=readers_process, args=(child, specs[j::n], REPORT_EVERY),
                               daemon=True)  # fmt: skip
            proc.start()
            self._readers.append((proc, parent))
            self._listen(parent, "readers", j)
        parent, child = ctx.Pipe()
        endpoints = [list(e) for e in ENDPOINTS]
        proc = ctx.Process(target=rest_process, daemon=True, args=(
            child, "127.0.0.1", self.app.web_port, self.config.rest_rate, endpoints,
            self.symbols, self.token, REPORT_EVERY))  # fmt: skip
        proc.start()
        self._rest = (proc, parent)
        self._listen(parent, "rest")

    def _listen(self, pipe, kind: str, tag: int = 0) -> None:
        def loop() -> None:
            while True:
                try:
                    message = pipe.recv()
                except (EOFError, OSError):
                    return
                with self._lock:
                    if message[0] == "report":
                        self._reports[kind].append(message[1])
                        if kind == "readers":  # readers connected: each process's newest
                            self._connected[tag] = message[1]["connected"]
                    else:
                        self._finals[kind].append(message[1])
                        return

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- sampling ---

    def _sampler(self) -> None:
        nxt = self.t0 + self.config.sample_every
        while not self._stop.wait(max(0.0, nxt - time.time())):
            nxt += self.config.sample_every
            try:
                sample = self.sample()
            except Exception as exc:  # a sample must not end the run; it says what failed
                sample = {"t": time.time() - self.t0, "sample_error": repr(exc)[:200]}
            self.samples.append(sample)
            self._print(sample)

    def _print(self, s: dict) -> None:
        def f(key: str, fmt: str = "{:.0f}") -> str:
            v = s.get(key)
            return "-" if v is None else fmt.format(v)

        print(
            f"  t={s['t']:6.0f} s  lag p99 {f('ingest_lag_p99_ms')} ms  batch p99 "
            f"{f('batch_p99_ms')} ms  behind {f('behind_s', '{:.1f}')} s  tick->client p99 "
            f"{f('tick_to_client_p99_ms')} ms  REST {f('rest_per_s')}/s p99 "
            f"{f('rest_p99_ms')} ms err {s.get('rest_errors', '-')}  "
            f"ws {s.get('ws_connected', '-')}"
            f"  db {f('db_mb')} MB  redis {f('redis_mb', '{:.1f}')} MB  ready "
            f"{s.get('ready_status')}  load {s.get('loadavg', 0):.1f}",
            flush=True,
        )

    def _cpu_times(self) -> dict[str, float]:
        """CPU % of each part's process tree since the last call."""
        import psutil

        now = time.monotonic()
        out: dict[str, float] = {}
        seen: dict[int, float] = {}
        for name, procs in self._trees().items():
            total = 0.0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    seen[p.pid] = t.user + t.system
                    total += seen[p.pid] - self._cpu.get(p.pid, seen[p.pid])
            out[name] = total
        dt = now - getattr(self, "_cpu_at", now)
        self._cpu, self._cpu_at = seen, now
        return {k: 100.0 * v / dt for k, v in out.items()} if dt > 0 else {}

    def _trees(self) -> dict[str, list]:
        import psutil

        trees: dict[str, list] = {}
        roots = dict(self.app.pids())
        for name, server in (("postgres", self.servers.pg), ("redis", self.servers.redis)):
            if server.proc is not None:
                roots[name] = server.proc.pid
        for j, (proc, _) in enumerate(self._readers):
            roots[f"readers-{j}"] = proc.pid
        if self._rest:
            roots["rest_load"] = self._rest[0].pid
        for name, pid in roots.items():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                trees[name] = [root, *root.children(recursive=True)]
        return trees

    def _memory(self) -> dict[str, float]:
        """MB per part: RSS of its process tree; PostgreSQL's as PSS (its backends share
        its buffers, which RSS would count once per backend)."""
        import psutil

        out = {}
        for name, procs in self._trees().items():
            total, read = 0, False
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_full_info().pss if name == "postgres" else (
                        p.memory_info().rss)  # fmt: skip
                    read = True
            if read:  # a process on its way out is left out, not drawn as 0 MB
                out[name] = total / 2**20
        return out

    def _drain_reports(self) -> tuple[list[dict], list[dict]]:
        with self._lock:
            readers, self._reports["readers"] = self._reports["readers"], []
            rest, self._reports["rest"] = self._reports["rest"], []
        return readers, rest

    def sample(self) -> dict:
        import psycopg
        import redis

        from apps.market import keys
        from bench.common import http_ok

        now = time.time()
        since = self.samples[-1]["at"] if self.samples and "at" in self.samples[-1] else self.t0
        s: dict = {"t": now - self.t0, "at": now, "loadavg": os.getloadavg()[0]}
        # The pipeline: each batch's lag (slot -> worker start) and time, from its stats.
        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=2,
                                          socket_connect_timeout=2)  # fmt: skip
            stats = [json.loads(x) for x in client.lrange(keys.BATCH_STATS, 0, 200)]
            window = [
                e for e in stats
                if since < datetime.fromisoformat(e["scheduled_at"]).timestamp() <= now
            ]  # fmt: skip
            s["batches"] = len(window)
            if window:
                s["ingest_lag_p99_ms"] = percentile([e["lag_ms"] for e in window], 99)
                s["batch_p99_ms"] = percentile([e["total_ms"] for e in window], 99)
            if stats:
                newest = max(datetime.fromisoformat(e["scheduled_at"]).timestamp()
                             for e in stats)  # fmt: skip
                s["behind_s"] = now - newest
            info = client.info()
            s["redis_mb"] = info["used_memory"] / 2**20
            s["redis_clients"] = info["connected_clients"]
            s["ws_ticks_dropped"] = int(client.get(keys.WS_TICKS_DROPPED) or 0)
            s["ticks_expired"] = int(client.get(keys.TICKS_EXPIRED) or 0)
            client.close()
        except redis.RedisError as exc:
            s["redis_error"] = type(exc).__name__
        try:
            with psycopg.connect(self.db_url, connect_timeout=2) as conn:
                s["db_mb"] = (
                    conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                    / 2**20
                )
                s["pg_connections"] = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                ).fetchone()[0]  # fmt: skip
        except psycopg.Error as exc:
            s["db_error"] = type(exc).__name__
        # The clients' reports since the last sample.
        readers, rest = self._drain_reports()
        lat = np.concatenate([np.frombuffer(r["latencies"], dtype=np.float32) for r in readers]
                             or [np.zeros(0, np.float32)])  # fmt: skip
        span = max(now - since, 1e-9)
        if lat.size:
            s["tick_to_client_p50_ms"] = float(np.percentile(lat, 50)) * 1000.0
            s["tick_to_client_p99_ms"] = float(np.percentile(lat, 99)) * 1000.0
        s["ticks_received_per_s"] = sum(r["ticks"] for r in readers) / span
        s["ws_reconnects"] = sum(r["reconnects"] for r in readers)
        s["ws_drops"] = sum(r["drops"] for r in readers)
        ws_errors = Counter()
        for r in readers:
            ws_errors.update(r["errors"])
        s["ws_errors"] = dict(ws_errors)
        with self._lock:
            s["ws_connected"] = sum(self._connected.values()) if self._connected else None
        rest_lat = [
            np.frombuffer(b, dtype=np.float32) for r in rest for b in r["latencies"].values()
        ]
        all_rest = np.concatenate(rest_lat) if rest_lat else np.zeros(0, np.float32)
        errors = Counter()
        for r in rest:
            errors.update(r["errors"])
        s["rest_per_s"] = (all_rest.size + sum(errors.values())) / span
        if all_rest.size:
            s["rest_p50_ms"] = float(np.percentile(all_rest, 50))
            s["rest_p99_ms"] = float(np.percentile(all_rest, 99))
        s["rest_errors"] = sum(errors.values())
        s["rest_errors_by"] = dict(errors)
        s["ready_status"] = 200 if http_ok(f"{self.app.web_url}/ready", timeout=3) else "not 200"
        s["rss_mb"] = self._memory()
        s["cpu_pct"] = self._cpu_times()
        s["restarts"] = self.app.restarts()
        return s

    def event(self, kind: str, **details) -> dict:
        entry = {"kind": kind, "at": time.time(), "t": time.time() - self.t0, **details}
        self.events.append(entry)
        return entry

    # --- stop and check ---

    def finish(self) -> dict:
        """Stop the load (clients first, so each reports what it got), then the app, then
        check the stored record against what the clients received."""
        self._stop.set()
        for _, pipe in self._readers:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        if self._rest:
            with contextlib.suppress(OSError):
                self._rest[1].send(("stop",))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self._lock:
                if (len(self._finals["readers"]) == len(self._readers)
                        and len(self._finals["rest"]) == (1 if self._rest else 0)):  # fmt: skip
                    break
            time.sleep(0.5)
        readers = [r for chunk in self._finals["readers"] for r in chunk]
        rest_final = self._finals["rest"][0] if self._finals["rest"] else None
        self._stop_clients()
        time.sleep(2 * TICK_INTERVAL)
        self.app.stop()
        log_errors = self.app.log_errors()
        print(f"{self.name}: load stopped; checking the stored record", flush=True)
        checks = end_checks(self.db_url, readers, n_symbols=len(self.symbols), since=self.t0)
        return {"readers": readers, "rest": rest_final, "checks": checks,
                "log_errors": log_errors, "restarts": self.app.restarts()}  # fmt: skip

    def _stop_clients(self) -> None:
        for proc, _ in [*self._readers, *([self._rest] if self._rest else [])]:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._stop_clients()
        if self.app is not None:
            with contextlib.suppress(Exception):
                self.app.stop()
        self.servers.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if self.keep_logs:  # the logs explain a run's figures; the servers' data would not
            for data in ("pg", "redis"):
                shutil.rmtree(self.root / data, ignore_errors=True)
            print(f"process logs kept in {self.log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


# --- End checks --------------------------------------------------------------------------------

BARS_OFF_SQL = """
SELECT count(*) FROM market_bar b
JOIN LATERAL (
    SELECT sum(t.size) AS volume, count(*) AS n, max(t.price) AS high, min(t.price) AS low,
           (array_agg(t.price ORDER BY t.ts))[1] AS open,
           (array_agg(t.price ORDER BY t.ts DESC))[1] AS close
    FROM market_tick t
    WHERE t.symbol_id = b.symbol_id AND t.ts >= b.ts AND t.ts < b.ts + interval '1 minute'
) t ON true
WHERE b.interval = '1m' AND (b.volume, b.trades, b.high, b.low, b.open, b.close)
      IS DISTINCT FROM (t.volume, t.n, t.high, t.low, t.open, t.close)
"""


def end_checks(db_url: str, readers: list[dict], *, n_symbols: int, since: float,
               indicator_sample: int = 10) -> dict:  # fmt: skip
    """The stored record against itself (slots, bars, snapshots, TA-Lib) and against what
    every reader received. Slots are judged from `since` (epoch s: the load's start); the
    stack's first seconds, while the worker warms up, are reported apart."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        slots = conn.execute(
            "SELECT (extract(epoch FROM ts) * 1000000)::bigint, count(*) FROM market_tick "
            "GROUP BY ts ORDER BY ts"
        ).fetchall()
        bars, bars_off = conn.execute(
            f"SELECT (SELECT count(*) FROM market_bar WHERE interval = '1m'), ({BARS_OFF_SQL})"  # noqa: S608 (constant SQL)
        ).fetchone()
        ticks, snapshots, without = conn.execute(
            """SELECT (SELECT count(*) FROM market_tick),
                      (SELECT count(*) FROM indicators_indicatorsnapshot),
                      (SELECT count(*) FROM market_tick t WHERE NOT EXISTS (
                           SELECT 1 FROM indicators_indicatorsnapshot s
                           WHERE s.symbol_id = t.symbol_id AND s.ts = t.ts))"""
        ).fetchone()
        stored = _stored_ticks(conn)
        indicators = _indicators_vs_talib(conn, indicator_sample)
    step = round(TICK_INTERVAL * 1e6)
    times = [ts for ts, _ in slots]
    gaps = [times[i] + k * step for i in range(len(times) - 1)
            for k in range(1, round((times[i + 1] - times[i]) / step))]  # fmt: skip
    missing = [m for m in gaps if m >= since * 1e6]
    return {
        "judged_from": since,
        "missing_slots_before_load": len(gaps) - len(missing),
        "ticks": ticks,
        "slots": len(slots),
        "partial_slots": sum(1 for ts, n in slots if n != n_symbols and ts >= since * 1e6),
        "missing_slots": missing,  # µs since the epoch
        "first_slot": times[0] if times else None,
        "last_slot": times[-1] if times else None,
        "bars_1m": bars,
        "bars_differing_from_ticks": bars_off,
        "snapshots": snapshots,
        "ticks_without_snapshot": without,
        "indicators_vs_talib": indicators,
        "clients": clients_vs_ticks(readers, stored),
    }


def _stored_ticks(conn) -> dict[str, np.ndarray]:
    """Every stored tick's ts (µs since the epoch), sorted, per symbol."""
    rows: dict[str, list[int]] = {}
    with conn.cursor() as cur:
        cur.execute("SELECT symbol_id, (extract(epoch FROM ts) * 1000000)::bigint "
                    "FROM market_tick ORDER BY symbol_id, ts")  # fmt: skip
        for symbol, micros in cur:
            rows.setdefault(symbol, []).append(micros)
    return {k: np.array(v, dtype=np.int64) for k, v in rows.items()}


# A tick stored this long before a connection closed should have reached it: a reader that
# stops getting ticks while still connected shows as missing them.
DELIVERY_MARGIN_S = 5.0


def clients_vs_ticks(readers: list[dict], stored: dict[str, np.ndarray]) -> dict:
    """Per reader and connection: every stored tick of its symbols from the first it got
    until DELIVERY_MARGIN_S before the connection closed must have come, once; what it got
    must be stored. A `/ws/stocks` reader's snapshot history counts as received (that is how
    it resumes after a reconnect)."""
    empty = np.zeros(0, dtype=np.int64)
    per_client = []
    missing_at: Counter[int] = Counter()  # missed ticks by the second of their slot
    for r in readers:
        missing = phantom = between = resumed = 0
        sessions = r["sessions"]
        prev_last: dict[str, int] = {}
        union: dict[str, set] = {}
        for k, s in enumerate(sessions):
            got_any = False
            for symbol in r["symbols"]:
                got = np.frombuffer(s["ticks"].get(symbol, b""), dtype=np.int64)
                hist = np.array(s["history"].get(symbol, []), dtype=np.int64)
                have = np.unique(np.concatenate([got, hist]))
                if not have.size:
                    continue
                got_any = got_any or got.size > 0
                db = stored.get(symbol, empty)
                lo, hi = have[0], have[-1]
                until = max(hi, int(((s["closed"] or 0) - DELIVERY_MARGIN_S) * 1e6))
                expected = db[(db >= lo) & (db <= until)]
                lost = np.setdiff1d(expected, have, assume_unique=True)
                missing += lost.size
                missing_at.update((lost // 1_000_000).tolist())
                phantom += np.setdiff1d(have, db, assume_unique=True).size
                if symbol in prev_last:  # what fell between this connection and the last
                    between += int(((db > prev_last[symbol]) & (db < lo)).sum())
                prev_last[symbol] = hi
                union.setdefault(symbol, set()).update(have.tolist())
            if k > 0 and got_any:
                resumed += 1
        per_client.append({
            "index": r["index"], "kind": r["kind"], "sessions": len(sessions),
            "reconnects": r["reconnects"], "resumed": resumed, "missing": missing,
            "not_stored": phantom, "missed_between_connections": between,
            "duplicates": r["duplicates"], "out_of_order": r["out_of_order"],
            "errors": r["errors"],
            "closes": dict(Counter(s["close"] for s in sessions)),
        })  # fmt: skip
    reconnected = [c for c in per_client if c["reconnects"]]
    return {
        "readers": len(per_client),
        "by_kind": dict(Counter(c["kind"] for c in per_client)),
        "clients_with_gaps": sum(1 for c in per_client if c["missing"]),
        "missing_ticks": sum(c["missing"] for c in per_client),
        "received_not_stored": sum(c["not_stored"] for c in per_client),
        "duplicates": sum(c["duplicates"] for c in per_client),
        "out_of_order": sum(c["out_of_order"] for c in per_client),
        "clients_reconnected": len(reconnected),
        "reconnects": sum(c["reconnects"] for c in per_client),
        "reconnects_resumed": sum(c["resumed"] for c in per_client),
        "missed_between_connections": sum(c["missed_between_connections"] for c in per_client),
        "stocks_reconnects_gapless": sum(
            c["resumed"] for c in reconnected if c["kind"] == "stocks" and not c["missing"]
        ),
        "never_connected": sum(1 for c in per_client if c["sessions"] == 0),
        "worst": sorted(per_client, key=lambda c: -c["missing"])[:5],
        "missing_by_second": {
            micros_text(k * 1_000_000): v for k, v in sorted(missing_at.items())[:200]
        },
    }


def _indicators_vs_talib(conn, count: int) -> dict:
    """Snapshots of a sample of symbols against TA-Lib over their stored ticks, to the
    engine tests' tolerance (apps/indicators/engine/tests/reference.py)."""
    from apps.indicators.engine import FIELDS
    from apps.indicators.engine.tests.reference import TOL, talib_reference

    fields = [f for f in FIELDS if f != "anomaly"]
    symbols = [r[0] for r in conn.execute(
        "SELECT ticker FROM market_symbol ORDER BY ticker").fetchall()]  # fmt: skip
    sample = random.Random(8).sample(symbols, min(count, len(symbols)))
    compared = off = null_mismatch = 0
    worst = 0.0
    per_symbol = {}
    for symbol in sample:
        rows = conn.execute(
            f"SELECT t.price, {', '.join('s.' + f for f in fields)} FROM market_tick t "  # noqa: S608
            "LEFT JOIN indicators_indicatorsnapshot s ON s.symbol_id = t.symbol_id "
            "AND s.ts = t.ts WHERE t.symbol_id = %s ORDER BY t.ts",
            [symbol],
        ).fetchall()  # fmt: skip
        if not rows:
            continue
        data = np.array([[np.nan if v is None else v for v in row] for row in rows])
        ref = talib_reference(data[:, 0])
        bad = 0
        for j, name in enumerate(fields, start=1):
            ours, theirs = data[:, j], ref[name]
            both = ~np.isnan(ours) & ~np.isnan(theirs)
            null_mismatch += int((np.isnan(ours) != np.isnan(theirs)).sum())
            diff = np.abs(ours[both] - theirs[both])
            if name.startswith("bb_"):  # the band's scale: its mean and its 2 stddev
                scale = np.maximum(1.0, np.abs(ref["bb_middle"][both]) + np.abs(
                    ref["bb_upper"][both] - ref["bb_middle"][both]))  # fmt: skip
                diff = diff / scale
            compared += int(both.sum())
            bad += int((diff > TOL).sum())
            if diff.size:
                worst = max(worst, float(diff.max()))
        off += bad
        per_symbol[symbol] = {"ticks": len(rows), "off": bad}
    return {"symbols": sample, "values_compared": compared, "values_off": off,
            "null_mismatches": null_mismatch, "worst_abs_diff": worst, "tolerance": TOL,
            "fields": fields, "per_symbol": per_symbol}  # fmt: skip


# --- Reporting ---------------------------------------------------------------------------------

# The measures charted and summarised: (key in a sample, label, unit).
MEASURES = [
    ("ingest_lag_p99_ms", "ingest lag p99 (slot -> worker start)", "ms"),
    ("batch_p99_ms", "batch p99 (worker start -> published)", "ms"),
    ("behind_s", "newest batch's slot behind the clock", "s"),
    ("tick_to_client_p99_ms", "tick-to-client p99", "ms"),
    ("rest_p99_ms", "REST p99", "ms"),
    ("rest_per_s", "REST answered/s", "1/s"),
    ("rest_errors", "REST errors per sample", "n"),
    ("ws_connected", "WebSocket readers connected", "n"),
    ("pg_connections", "PostgreSQL client connections", "n"),
    ("redis_clients", "Redis clients", "n"),
    ("db_mb", "database size", "MB"),
    ("redis_mb", "Redis used memory", "MB"),
]


def series(samples: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(minutes, values) of one measure; a dotted key reaches into a dict ("rss_mb.web")."""
    xs, ys = [], []
    for s in samples:
        value = s
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            xs.append(s["t"] / 60.0)
            ys.append(float(value))
    return np.array(xs), np.array(ys)


def trends(samples: list[dict], window_min: float) -> list[dict]:
    """Each measure's mean over the first and the last `window_min` minutes and the slope
    of a straight line fitted to all of it (per hour)."""
    keys = [(k, label, unit) for k, label, unit in MEASURES]
    parts = sorted({p for s in samples for p in s.get("rss_mb", {})})
    keys += [(f"rss_mb.{p}", f"RSS {p}" if p != "postgres" else "PSS postgres", "MB")
             for p in parts]  # fmt: skip
    keys += [(f"cpu_pct.{p}", f"CPU {p}", "%") for p in parts]
    out = []
    for key, label, unit in keys:
        x, y = series(samples, key)
        if not x.size:
            continue
        end = x.max()
        first, last = y[x <= x.min() + window_min], y[x >= end - window_min]
        slope = float(np.polyfit(x, y, 1)[0] * 60.0) if x.size >= 3 and np.ptp(x) > 0 else None
        out.append({"measure": key, "label": label, "unit": unit,
                    "first": float(first.mean()) if first.size else None,
                    "last": float(last.mean()) if last.size else None,
                    "max": float(y.max()), "slope_per_hour": slope})  # fmt: skip
    return out


def charts(name: str, samples: list[dict], events: list[dict]) -> list[Path]:
    """PNG charts of every measure over time under bench/results/: `<name>_<group>.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = sorted({p for s in samples for p in s.get("rss_mb", {})})
    groups = {
        "pipeline": [("ingest_lag_p99_ms", "ingest lag p99 (ms)"),
                     ("batch_p99_ms", "batch p99 (ms)"),
                     ("behind_s", "newest slot behind the clock (s)")],
        "latency": [("tick_to_client_p99_ms", "tick-to-client p99 (ms)"),
                    ("tick_to_client_p50_ms", "tick-to-client p50 (ms)"),
                    ("rest_p99_ms", "REST p99 (ms)"), ("rest_p50_ms", "REST p50 (ms)")],
        "memory": [(f"rss_mb.{p}", f"{p} ({'PSS' if p == 'postgres' else 'RSS'}, MB)")
                   for p in parts],
        "storage": [("db_mb", "database size (MB)"), ("redis_mb", "Redis used memory (MB)")],
        "connections": [("ws_connected", "WebSocket readers connected"),
                        ("pg_connections", "PostgreSQL client connections"),
                        ("redis_clients", "Redis clients")],
        "errors": [("rest_errors", "REST errors"), ("ws_drops", "WebSocket drops"),
                   ("ws_reconnects", "WebSocket reconnects"), ("rest_per_s", "REST answered/s")],
        "cpu": [(f"cpu_pct.{p}", f"{p} (% of a core)") for p in parts],
    }  # fmt: skip
    paths = []
    RESULTS_DIR.mkdir(exist_ok=True)
    for group, lines in groups.items():
        fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
        for key, label in lines:
            x, y = series(samples, key)
            if x.size:
                ax.plot(x, y, label=label, linewidth=1.2)
        for e in events:
            ax.axvline(e["t"] / 60.0, color="grey", linestyle=":", linewidth=0.8)
            ax.annotate(e.get("target", e["kind"]), (e["t"] / 60.0, 0.02),
                        xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                        va="bottom", ha="right", color="dimgrey")  # fmt: skip
        ax.set_xlabel("minutes")
        ax.set_title(f"{name}: {group}")
        ax.grid(True, alpha=0.3)
        if group in ("memory", "cpu"):
            ax.legend(fontsize=7, ncol=3, loc="upper left")
        else:
            ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        path = RESULTS_DIR / f"{name}_{group}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def micros_text(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%H:%M:%S.%f")[:-5]


def invariants(checks: dict, *, allowed_missing_slots: int | None = 0) -> list[list]:
    """The end checks as rows: (invariant, count, met). `allowed_missing_slots`: how many
    missing slots the run may explain (None: the caller judges them, as chaos does)."""
    c, ind = checks["clients"], checks["indicators_vs_talib"]

    def row(what: str, count: object, ok: bool) -> list:
        return [what, count, "met" if ok else "NOT MET"]

    rows = [
        row("slots stored", checks["slots"], checks["slots"] > 0),
        row("slots holding some symbols but not all", checks["partial_slots"],
            checks["partial_slots"] == 0),
        row("missing slots after the load started (before it, while the stack warmed up)",
            f"{len(checks['missing_slots'])} ({checks['missing_slots_before_load']})",
            allowed_missing_slots is None
            or len(checks["missing_slots"]) <= allowed_missing_slots),
        row("1-minute bars differing from their ticks (of all bars)",
            f"{checks['bars_differing_from_ticks']} of {checks['bars_1m']}",
            checks["bars_differing_from_ticks"] == 0),
        row("ticks without their indicator snapshot (of all ticks)",
            f"{checks['ticks_without_snapshot']} of {checks['ticks']}",
            checks["ticks_without_snapshot"] == 0 and checks["snapshots"] == checks["ticks"]),
        row(f"indicator values off TA-Lib by > {ind['tolerance']:g} ({len(ind['symbols'])} "
            "symbols, of all compared)", f"{ind['values_off']} of {ind['values_compared']}",
            ind["values_off"] == 0),
        row("indicator values null on one side only", ind["null_mismatches"],
            ind["null_mismatches"] == 0),
        row("readers never connected (of all)", f"{c['never_connected']} of {c['readers']}",
            c["never_connected"] == 0),
        row("stored ticks a reader missed while connected (readers with gaps)",
            f"{c['missing_ticks']} ({c['clients_with_gaps']})", c["missing_ticks"] == 0),
        row("ticks received twice", c["duplicates"], c["duplicates"] == 0),
        row("ticks received out of order", c["out_of_order"], c["out_of_order"] == 0),
        row("ticks received but never stored", c["received_not_stored"],
            c["received_not_stored"] == 0),
    ]  # fmt: skip
    return rows


def trend_rows(summary: list[dict]) -> list[list]:
    def v(x: float | None) -> object:
        return "-" if x is None else x

    return [[s["label"], s["unit"], v(s["first"]), v(s["last"]), v(s["max"]),
             "-" if s["slope_per_hour"] is None else f"{s['slope_per_hour']:+.3g}"]
            for s in summary]  # fmt: skip
