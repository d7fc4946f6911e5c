"""What the Prometheus metrics cost: the pipeline at 5,000 symbols and `/price`, each with the
metrics on and off, alternating in one process so the machine's drift falls on both alike.

    python bench/metrics_cost.py [--quick]        (make bench runs it with real services)

**On** is the code as it runs: multiprocess mode, PROMETHEUS_MULTIPROC_DIR set (here to a
temporary directory) before anything imports `apps.ops.metrics`, so every value goes to a
memory-mapped file as in a deployment.

**Off** turns the instrumentation into nothing, in this process only:

- pipeline: the module attributes the pipeline calls through are swapped for no-ops,
  `apps.ingest.metrics.batch_done` (the batch's counters, timings and the pool sample),
  `apps.ingest.metrics.published` (the publish lag), `apps.alerts.metrics.evaluated` (the
  alert stage's), and `apps.ingest.metrics.STAGE_SECONDS` (the overview's timing) for an
  object whose `labels().observe()` does nothing. The Redis client's error counting
  (`apps/ops/redis_client.py`) stays: it costs a `try` and counts only errors.
- `/price`: a second Django test client whose handler was built without
  `apps.ops.metrics.RequestMetricsMiddleware` in MIDDLEWARE: no timing, no route lookup,
  no counters. Both clients are in-process (no HTTP server, no proxy): the difference is
  all Django and the metrics, where over HTTP it would be a smaller share.

Batches (and single requests) alternate on, off, off, on, ... so the tables' growth and
the machine's load fall on both; each is timed by the wall clock and by this process's CPU
time, which other processes on a shared machine move less. Besides the medians, the
direct cost: the instrumentation calls of one batch (and the middleware's of one request)
timed alone, a figure the noise of a shared machine blurs less.
Writes bench/results/metrics_cost.json.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Before anything imports apps.ops.metrics: multiprocess mode, as under make run.
METRICS_DIR = tempfile.mkdtemp(prefix="mf-metrics-cost-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR
os.environ["MARKETFLUX_THROTTLE_ANON"] = "1000000/s"  # never throttled; its counter still runs
os.environ.setdefault("DEBUG", "0")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from bench.common import (  # noqa: E402
    clear_app_redis_keys,
    drop_bench_database,
    machine_info,
    print_table,
    setup_django_with_bench_database,
    summary,
    write_results,
)

TARGET_RATIO = 1.03  # the issue: metrics cost under 3 %
SYMBOLS = 5000
PRICE_PATH = "/api/v1/stocks/AAPL/price"


class _NullMetric:
    """Stands for a metric with labels: `labels(...)` and `observe`/`inc` do nothing."""

    def labels(self, *args, **kwargs) -> _NullMetric:
        return self

    def observe(self, *args, **kwargs) -> None:
        pass

    def inc(self, *args, **kwargs) -> None:
        pass


def _nothing(*args, **kwargs) -> None:
    pass


class PipelineSwitch:
    """The pipeline's instrumentation calls on (the real ones) or off (no-ops)."""

    def __init__(self) -> None:
        from apps.alerts import metrics as alerts_metrics
        from apps.ingest import metrics as ingest_metrics

        self.real = {
            (ingest_metrics, "batch_done"): ingest_metrics.batch_done,
            (ingest_metrics, "published"): ingest_metrics.published,
            (ingest_metrics, "STAGE_SECONDS"): ingest_metrics.STAGE_SECONDS,
            (alerts_metrics, "evaluated"): alerts_metrics.evaluated,
        }
        self.null = {key: _NullMetric() if key[1] == "STAGE_SECONDS" else _nothing
                     for key in self.real}  # fmt: skip

    def set(self, on: bool) -> None:
        for (module, name), value in (self.real if on else self.null).items():
            setattr(module, name, value)


def run_pipeline(batches: int, warmup: int) -> dict:
    """`batches` 5,000-symbol batches each way, alternating on/off in ABBA order, driven as
    bench/pipeline.py drives them (ingest, then the overview when due, a market listener in
    its own process)."""
    from apps.alerts import metrics as alerts_metrics
    from apps.ingest import metrics as ingest_metrics
    from apps.ingest.pipeline import ingest
    from apps.ingest.services import publish_overview_if_due
    from apps.market.services import symbols_seed
    from bench.pipeline import MarketListener, _batches, _symbols
    from marketflux_site.celery import freeze_startup_objects

    symbols = _symbols(SYMBOLS)
    symbols_seed(tickers=symbols)
    freeze_startup_objects()
    switch = PipelineSwitch()
    times: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    start = datetime(2026, 1, 5, tzinfo=UTC)
    sample = None
    with MarketListener():
        for i, batch in enumerate(_batches(symbols, warmup + 2 * batches, start)):
            n = i - warmup
            on = n < 0 or n % 4 in (0, 3)  # warm-up on; then on, off, off, on, ...
            switch.set(on)
            counted = _live_batches() if n in (0, 1) else None
            t0, c0 = time.perf_counter(), time.process_time()
            result = ingest(batch)
            publish_overview_if_due(result.states)
            wall, spent = time.perf_counter() - t0, time.process_time() - c0
            if n >= 0:
                times[on].append(wall * 1000.0)
                cpu[on].append(spent * 1000.0)
            if counted is not None:  # the first batch on counts, the first off does not
                assert _live_batches() - counted == (1 if on else 0), "the switch does not"
            sample = result
    switch.set(True)
    # The direct cost: one batch's instrumentation calls, alone, as the pipeline makes them.
    calls = []
    for _ in range(2000):
        t0 = time.perf_counter()
        ingest_metrics.batch_done(sample.received, sample.stored, sample.stage_ms, live=True,
                                  seconds=0.1)  # fmt: skip
        ingest_metrics.published(int(time.time() * 1e6))
        alerts_metrics.evaluated(0, 0, 0.0005)
        calls.append((time.perf_counter() - t0) * 1e6)
    return _compare(times, cpu, unit="ms", direct_us=statistics.median(calls))


def run_price(requests: int) -> dict:
    """`requests` requests each way, alternating on/off in ABBA order."""
    from django.conf import settings
    from django.test import Client, override_settings

    from apps.ingest.pipeline import TickBatch, ingest
    from apps.market.services import symbols_seed
    from apps.ops.metrics import RequestMetricsMiddleware

    symbols_seed(tickers=["AAPL"])
    ingest(TickBatch.from_rows([("AAPL", datetime.now(UTC) - timedelta(seconds=1), 228.5, 100)]))
    with_metrics = Client(HTTP_HOST="127.0.0.1")
    assert with_metrics.get(PRICE_PATH).status_code == 200  # builds its handler
    name = "apps.ops.metrics.RequestMetricsMiddleware"
    assert name in settings.MIDDLEWARE
    without = [m for m in settings.MIDDLEWARE if m != name]
    without_metrics = Client(HTTP_HOST="127.0.0.1")
    with override_settings(MIDDLEWARE=without):  # its handler is built now, without it
        assert without_metrics.get(PRICE_PATH).status_code == 200
    # Each client does what it says: a request on counts one, a request off none.
    for client, counted in ((with_metrics, 1), (without_metrics, 0)):
        before = _price_requests()
        client.get(PRICE_PATH)
        assert _price_requests() - before == counted, "a client does not do what it says"
    clients = {True: with_metrics, False: without_metrics}
    for client in clients.values():  # warm-up
        for _ in range(200):
            client.get(PRICE_PATH)
    # One request at a time, on, off, off, on, ...: a burst of load falls on both alike.
    times: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for r in range(2 * requests):
        on = r % 4 in (0, 3)
        t0, c0 = time.perf_counter(), time.process_time()
        answer = clients[on].get(PRICE_PATH)
        times[on].append((time.perf_counter() - t0) * 1e6)
        cpu[on].append((time.process_time() - c0) * 1e6)
        assert answer.status_code == 200, answer.status_code
    # The direct cost: the middleware's own work around one request.
    request = with_metrics.get(PRICE_PATH).wsgi_request
    response = with_metrics.get(PRICE_PATH)
    middleware = RequestMetricsMiddleware(lambda _request: response)
    calls = []
    for _ in range(20000):
        t0 = time.perf_counter()
        middleware(request)
        calls.append((time.perf_counter() - t0) * 1e6)
    return _compare(times, cpu, unit="us", direct_us=statistics.median(calls))


def _live_batches() -> float:
    """Live batches counted so far, read as /metrics would sum them."""
    from apps.ops import metrics

    return metrics.read().total("marketflux_pipeline_batches_total", mode="live")


def _price_requests() -> float:
    """`/price` requests counted so far, read as /metrics would sum them."""
    from apps.ops import metrics

    return metrics.read().total(
        "marketflux_http_requests_total", route="/api/v1/stocks/{symbol}/price"
    )


def _compare(times: dict[bool, list[float]], cpu: dict[bool, list[float]], *, unit: str,
             direct_us: float) -> dict:  # fmt: skip
    """Medians on and off, wall clock and this process's CPU time (the second is less
    moved by other processes on a shared machine), and the direct cost's share."""
    on, off = times[True], times[False]
    median_on, median_off = statistics.median(on), statistics.median(off)
    cpu_on, cpu_off = statistics.median(cpu[True]), statistics.median(cpu[False])
    per_unit = 1000.0 if unit == "ms" else 1.0
    return {
        "unit": unit,
        "samples_each": len(on),
        "on": summary(on),
        "off": summary(off),
        "median_on": median_on,
        "median_off": median_off,
        "ratio": median_on / median_off,
        "cpu_median_on": cpu_on,
        "cpu_median_off": cpu_off,
        "cpu_ratio": cpu_on / cpu_off,
        "direct_us": direct_us,
        "direct_share": direct_us / (median_off * per_unit),
        "direct_share_of_cpu": direct_us / (cpu_off * per_unit),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, to check it works")
    args = parser.parse_args()
    batches, warmup = (12, 2) if args.quick else (120, 6)
    requests = 1000 if args.quick else 20000
    load = machine_info().get("loadavg")
    name = setup_django_with_bench_database()
    try:
        clear_app_redis_keys()
        pipeline = run_pipeline(batches, warmup)
        price = run_price(requests)
    finally:
        drop_bench_database(name)
        shutil.rmtree(METRICS_DIR, ignore_errors=True)

    rows = []
    for label, r, unit in (
        (f"pipeline, {SYMBOLS:,} symbols, per batch", pipeline, "ms"),
        (f"GET {PRICE_PATH}, in process, per request", price, "us"),
    ):
        rows.append([label, r["samples_each"],
                     f"{r['median_on']:.3f} / {r['median_off']:.3f} {unit}",
                     f"{(r['ratio'] - 1) * 100:+.2f} %",
                     f"{r['cpu_median_on']:.3f} / {r['cpu_median_off']:.3f} {unit}",
                     f"{(r['cpu_ratio'] - 1) * 100:+.2f} %",
                     f"{r['direct_us']:.1f} us ({r['direct_share_of_cpu'] * 100:.2f} %)",
                     f"< {(TARGET_RATIO - 1) * 100:.0f} %",
                     "met" if r["cpu_ratio"] < TARGET_RATIO else "NOT met"])  # fmt: skip
    print_table(
        "metrics on (multiprocess files) vs off (no-op instrumentation), alternating, medians",
        ["measure", "samples each", "wall on / off", "wall +", "CPU on / off", "CPU +",
         "direct cost of the calls (of CPU off)", "target", "(on CPU)"],
        rows,
    )  # fmt: skip
    print(f"load average at start {load}, at end {machine_info().get('loadavg')}")
    write_results(
        "metrics_cost",
        {
            "pipeline": pipeline,
            "price": price,
            "plan": {
                "batches_each": batches,
                "warmup": warmup,
                "requests_each": requests,
            },
            "loadavg_at_start": load,
            "target_ratio": TARGET_RATIO,
        },
    )


if __name__ == "__main__":
    main()
