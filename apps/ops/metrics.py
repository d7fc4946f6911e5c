"""Prometheus metrics (docs/operations.md#metrics): the shared parts, and what belongs to no
higher app (REST requests, storage, Redis errors, Celery workers, the build).

**Multiprocess mode.** One host runs many Python processes that count: the WSGI workers
(granian), the Daphne processes, the Celery worker and its pool, the live sources. Each
keeps its values in memory-mapped files under `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's
multiprocess mode), and `GET /metrics`, answered by whichever WSGI process gets it, sums
them all at scrape time. One target per host, nothing to discover, and a worker's counts
are there although a worker serves no HTTP. The alternative, an exporter in every process,
needs a port per prefork child, granian worker and Daphne and a scrape config that follows
them as they are respawned. The launcher sets the directory for every child and empties it
at start; Docker Compose shares one volume between the app's containers. Without the
variable (a test run, `manage.py shell`) the values live in the process's memory and
`/metrics` shows that process alone.

A process is named by host *and* pid in the file names (`process_identifier`), since
containers sharing the volume each number their processes from 1. Gauges say how they
combine (`multiprocess_mode`): `livesum` and `livemax` drop a process that has gone; a
scrape forgets the files of this host's processes that no longer run (a SIGKILLed Celery
child, a respawned granian worker), and a Celery pool child forgets its own as it exits.

Metric objects are made through this module's `Counter`, `Gauge` and `Histogram`, so that
the process identifier is installed before the first value exists. Each layer keeps its
metrics in a module of its own (`apps/ingest/metrics.py`, `apps/alerts/metrics.py`,
`apps/streaming/metrics.py`, `apps/sources/metrics.py`); facts read at scrape time (row
counts, worker heartbeats, a source's state) come from collectors registered here with
`add_scrape_collector`.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import functools
import glob
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client import Counter as Counter  # re-exported: made after the identifier
from prometheus_client import Gauge as Gauge
from prometheus_client import Histogram as Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BASE_DIR = Path(__file__).resolve().parents[2]
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def process_identifier() -> str:
    """This process in the multiprocess files: host and pid (`_` separates the name's parts,
    so it holds none)."""
    return f"{_HOST}-{os.getpid()}"


def multiprocess_dir() -> str | None:
    """Where this host's processes keep their values, when in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or None


if multiprocess_dir():
    os.makedirs(multiprocess_dir(), exist_ok=True)  # type: ignore[arg-type]
    values.ValueClass = values.MultiProcessValue(process_identifier)


# Latency buckets (seconds) shared by the histograms: 0.5 ms to 10 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


# --- REST ------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "marketflux_http_requests_total",
    "HTTP requests answered by Django, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "marketflux_http_request_duration_seconds",
    "Time Django took to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Set on a request answered before URL resolution (apps/api/lean.py) to the route it serves.
ROUTE_ATTR = "metrics_route"


@functools.lru_cache(maxsize=1024)
def _template(route: str) -> str:
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)  # a regex route's named groups
    text = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)  # a path route's converters
    return "/" + text.replace("^", "").replace("$", "").replace("/?", "")


def route_template(match: Any) -> str:
    """A resolved URL's route as a template: `/api/v1/stocks/{symbol}/price`."""
    return _template(match.route) if match.route else match.view_name or "unnamed"


def route_of(request: Any) -> str:
    """The request's route template (bounded: never the path itself)."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return route_template(match)
    given = getattr(request, ROUTE_ATTR, None)
    if given:
        return given
    from django.conf import settings

    if request.path_info.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    return "unmatched"


FOLD_EVERY = 1.0  # seconds between folds of a process's request counts


class _RequestTally:
    """This process's request counts and timings in plain numbers, folded into the
    Prometheus children once a second (`fold`), by a daemon thread and before this process
    answers a scrape.

    Why not `inc()` and `observe()` per request: in multiprocess mode each is a locked write
    to a memory-mapped file, 4.5 us a request in all (`bench/metrics_cost.py`), about 2 % of
    a lean `/price`, and the whole middleware measured 5 % of it against a budget of 3 %.
    Here a request costs a lock, a bisect and three additions; the files get one write per
    value that changed, per second. Another process's scrape sees these counts up to a
    second late, as the scrape interval is 15 s.

    The histogram's values are reached through its children's `_sum` and `_buckets`
    (prometheus-client 0.26, pinned): the client has no call to add many observations.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (route, method, status) -> [requests, seconds, count per bucket]
        self._pending: dict[tuple[str, str, int], list] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._folder_pid = 0
        self._bounds = HTTP_SECONDS._upper_bounds  # the same for every child

    def add(self, key: tuple[str, str, int], seconds: float) -> None:
        bucket = bisect.bisect_left(self._bounds, seconds)  # the first bound >= seconds
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                entry = self._pending[key] = [0, 0.0, [0] * len(self._bounds)]
            entry[0] += 1
            entry[1] += seconds
            entry[2][bucket] += 1
        if self._folder_pid != os.getpid():  # none yet, or the process forked since
            self._start_folder()

    def fold(self) -> None:
        """Add what was counted since the last fold to the Prometheus values."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, (requests, seconds, buckets) in pending.items():
            children = self._children.get(key)
            if children is None:
                # `labels()` costs about 8 us in multiprocess mode: each child made once.
                # Routes are templates, so the keys are few.
                route, method, status = key
                children = self._children[key] = (
                    HTTP_REQUESTS.labels(route, method, str(status)),
                    HTTP_SECONDS.labels(route, method),
                )
            children[0].inc(requests)
            children[1]._sum.inc(seconds)
            for value, count in zip(children[1]._buckets, buckets, strict=True):
                if count:
                    value.inc(count)

    def _start_folder(self) -> None:
        self._folder_pid = os.getpid()
        threading.Thread(target=self._fold_forever, name="metrics-fold", daemon=True).start()

    def _fold_forever(self) -> None:
        while True:
            time.sleep(FOLD_EVERY)
            self.fold()


_tally = _RequestTally()
atexit.register(_tally.fold)


def fold_requests() -> None:
    """Bring this process's request counts into its values now (before a scrape)."""
    _tally.fold()


class RequestMetricsMiddleware:
    """Counts and times every request by route template, method and status; a thin
    middleware rather than django-prometheus, whose metrics are per view name and whose
    middleware pair and database wrappers measure much more than asked."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        began = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - began
        method = request.method if request.method in _METHODS else "other"
        _tally.add((route_of(request), method, response.status_code), elapsed)
        sample_db_pool()
        return response


# --- Storage and Redis -----------------------------------------------------------------------

DB_POOL = Gauge(
    "marketflux_db_pool_connections",
    "Database connections of the processes' pools: in_use (lent out), idle, and waiting "
    "(requests queued for one). Sampled after requests and batches, at most once a second.",
    ["state"],
    multiprocess_mode="livesum",
)
REDIS_ERRORS = Counter(
    "marketflux_redis_errors_total",
    "Errors talking to Redis through the app's client (connection refused or lost, timeouts, "
    "error replies), by exception class.",
    ["error"],
)
for _state in ("in_use", "idle", "waiting"):
    DB_POOL.labels(_state)
for _error in ("ConnectionError", "TimeoutError", "ResponseError"):
    REDIS_ERRORS.labels(_error)
_pool_sampled = 0.0


def sample_db_pool(*, every: float = 1.0) -> None:
    """Set this process's pool gauges from psycopg's pool, at most once per `every` s."""
    global _pool_sampled
    now = time.monotonic()
    if now - _pool_sampled < every:
        return
    _pool_sampled = now
    from django.db import connections

    pool = connections["default"].pool
    if pool is None:
        return
    stats = pool.get_stats()
    available = stats.get("pool_available", 0)
    DB_POOL.labels("in_use").set(stats.get("pool_size", 0) - available)
    DB_POOL.labels("idle").set(available)
    DB_POOL.labels("waiting").set(stats.get("requests_waiting", 0))


def count_redis_error(error: BaseException) -> None:
    """Count a Redis error once, however many layers of redis-py it passes through."""
    if getattr(error, "_marketflux_counted", False):
        return
    with contextlib.suppress(AttributeError):
        error._marketflux_counted = True  # type: ignore[attr-defined]
    REDIS_ERRORS.labels(type(error).__name__).inc()


# --- What a scrape reads --------------------------------------------------------------------

_scrape_collectors: list[Collector] = []


def add_scrape_collector(collector: Collector) -> None:
    """A collector run at every scrape (in the scraping process): for facts that live in
    the database or Redis rather than in a process. Apps add theirs in `ready()`."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


def _counted() -> CollectorRegistry:
    """What the processes counted: every process of this host in multiprocess mode (the
    files summed), else this process's own registry."""
    fold_requests()  # this process's latest requests too
    directory = multiprocess_dir()
    if directory:
        forget_dead_processes(directory)
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted, path=directory)
        return counted
    return REGISTRY


def exposition() -> bytes:
    """The Prometheus text of every process of this host, and the scrape-time facts."""
    counted = _counted()
    scraped = CollectorRegistry(auto_describe=False)
    for collector in _scrape_collectors:
        scraped.register(collector)
    return generate_latest(counted) + generate_latest(scraped)


class Readings:
    """The values `/metrics` would show, read in process (the operators' status page):
    the same multiprocess files summed the same way, without the scrape-time collectors
    (their facts the page reads where they live)."""

    def __init__(self, samples: Iterable[Any]) -> None:
        self._samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for sample in samples:
            self._samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
        return sum(
            value
            for have, value in self._samples.get(name, ())
            if all(have.get(k) == v for k, v in labels.items())
        )

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """`name`'s samples summed per value of `label` (among those matching `labels`)."""
        found: dict[str, float] = {}
        for have, value in self._samples.get(name, ()):
            if label in have and all(have.get(k) == v for k, v in labels.items()):
                found[have[label]] = found.get(have[label], 0.0) + value
        return found


def read() -> Readings:
    """Every counted sample of this host's processes, as the next scrape would sum them."""
    return Readings(s for family in _counted().collect() for s in family.samples)


_FILE = re.compile(r"^gauge_live[a-z]+_(?P<ident>[A-Za-z0-9.-]+)-(?P<pid>\d+)\.db$")


def forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of this host's processes that have exited (a SIGKILLed pool
    child, a respawned server worker): their connections and pool are gone with them."""
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        found = _FILE.match(os.path.basename(path))
        if found is None or found["ident"] != _HOST:
            continue
        pid = int(found["pid"])
        if not _alive(pid):
            multiprocess.mark_process_dead(f"{_HOST}-{pid}", directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_exited() -> None:
    """This process ends: its live gauges go (Celery's pool children call it on exit)."""
    directory = multiprocess_dir()
    if directory:
        multiprocess.mark_process_dead(process_identifier(), directory)


def reset_dir(directory: str | Path) -> None:
    """Empty (or make) the multiprocess directory, before the processes that write it
    start: values of a previous run must not be summed into this one's."""
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


# --- Scrape-time collectors of this layer ----------------------------------------------------


@functools.cache
def version() -> str:
    """The project's version, from pyproject.toml."""
    try:
        return tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


@functools.cache
def git_commit() -> str:
    """MARKETFLUX_GIT_COMMIT (set by a deployment), else the checkout's HEAD, else unknown."""
    given = os.environ.get("MARKETFLUX_GIT_COMMIT", "").strip()
    if given:
        return given
    git = shutil.which("git")
    if git and (BASE_DIR / ".git").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [git, "-C", str(BASE_DIR), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            )  # fmt: skip
            return done.stdout.strip() or "unknown"
    return "unknown"


def _timescale_version(cursor) -> str | None:
    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = cursor.fetchone()
    return row[0] if row else None


# Plain tables: the statistics' live rows, which move as transactions commit. Hypertables
# keep their rows in chunks (compressed ones elsewhere again): TimescaleDB's estimate.
_PLAIN_ROWS = """
SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = 'public'
"""
_HYPERTABLE_ROWS = """
SELECT hypertable_name,
       approximate_row_count(format('%I.%I', hypertable_schema, hypertable_name)::regclass)
FROM timescaledb_information.hypertables
"""
_CHUNKS = """
SELECT hypertable_name, is_compressed, count(*)
FROM timescaledb_information.chunks GROUP BY 1, 2
"""


class StorageCollector:
    """At each scrape: the build, rows per table (cheap estimates, no count(*)) and, on
    TimescaleDB, its chunks compressed or not. One short query each."""

    def collect(self) -> Iterator[Metric]:
        from django.db import DatabaseError, connection

        build = GaugeMetricFamily(
            "marketflux_build_info",
            "The running build: version, git commit and whether TimescaleDB is on (1).",
            labels=["version", "commit", "timescaledb"],
        )
        rows = GaugeMetricFamily(
            "marketflux_db_table_rows",
            "Rows per table, estimated: live rows from PostgreSQL's statistics, "
            "approximate_row_count for hypertables.",
            labels=["table"],
        )
        chunks = GaugeMetricFamily(
            "marketflux_timescaledb_chunks",
            "TimescaleDB chunks per hypertable, compressed or not (absent without it).",
            labels=["hypertable", "compressed"],
        )
        up = GaugeMetricFamily(
            "marketflux_db_up", "Whether the scrape could read the database (1) or not (0)."
        )
        timescale = None
        try:
            with connection.cursor() as cursor:
                timescale = _timescale_version(cursor)
                cursor.execute(_PLAIN_ROWS)
                estimates = {name: float(n) for name, n in cursor.fetchall()}
                if timescale:
                    cursor.execute(_HYPERTABLE_ROWS)
                    estimates.update((name, max(0.0, float(n))) for name, n in cursor.fetchall())
                    cursor.execute(_CHUNKS)
                    for name, compressed, count in cursor.fetchall():
                        chunks.add_metric([name, "true" if compressed else "false"], count)
            for name, estimate in sorted(estimates.items()):
                rows.add_metric([name], estimate)
            up.add_metric([], 1)
        except DatabaseError:
            up.add_metric([], 0)
        build.add_metric([version(), git_commit(), "true" if timescale else "false"], 1)
        yield from (build, up, rows, chunks)  # chunks: declared, without samples, on plain PG


class WorkerCollector:
    """At each scrape: the Celery workers that reported in the last seconds, from their
    heartbeats in Redis (`apps.ops.status`), so a worker on any host counts."""

    def collect(self) -> Iterator[Metric]:
        import redis

        from apps.ops import status

        alive = GaugeMetricFamily(
            "marketflux_celery_workers",
            f"Celery workers whose heartbeat is fresh (reported within {status.STALE_AFTER:g} s).",
        )
        age = GaugeMetricFamily(
            "marketflux_celery_worker_heartbeat_age_seconds",
            "Seconds since each Celery worker last reported.",
            labels=["worker"],
        )
        try:
            reports = status.read(status.WORKERS)
        except redis.RedisError as error:
            count_redis_error(error)
            return
        for name, report in reports.items():
            age.add_metric([name], report["age_s"])
        alive.add_metric([], sum(not r["stale"] for r in reports.values()))
        yield alive
        yield age


add_scrape_collector(StorageCollector())
add_scrape_collector(WorkerCollector())


# --- Who may scrape --------------------------------------------------------------------------


def parse_networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """MARKETFLUX_METRICS_ALLOW's entries as networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def client_address(meta: dict, num_proxies: int) -> str:
    """The client's address as the API throttle sees it: with `num_proxies` in front, the
    one they recorded in X-Forwarded-For (the last they added), else the peer's."""
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if num_proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(num_proxies, len(hops))]
    return meta.get("REMOTE_ADDR", "")


def allowed(
    address: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Whether `address` is in one of `networks`."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)
