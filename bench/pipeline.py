"""End-to-end ingest throughput and latency, beside a raw binary COPY of the same ticks.

    python bench/pipeline.py [--quick]        (make bench runs it with real services)

Every stage runs for real: PostgreSQL (ticks, bars, snapshots), the indicator engine, Redis
(state and hot state) and the channel layer (one /ws/market-style listener subscribed).
As in the tick task, the market overview goes out after a batch, once a second: its time
counts in ticks/s, not in the batch latency (the time until the batch's ticks are sent),
and has its own column. Writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    drop_bench_database,
    print_table,
    setup_django_with_bench_database,
    summary,
    write_results,
)

TARGET_TICKS_PER_S_AT_5000 = 25_000
TARGET_P99_MS = {5: 20.0, 5000: 250.0}


def _symbols(n: int) -> list[str]:
    return [f"B{n}X{i:05d}" for i in range(n)]


def _batches(symbols: list[str], count: int, start: datetime):
    import numpy as np

    from apps.ingest.pipeline import TickBatch
    from apps.market import simulator

    params = [simulator.SimulatorParams(s, 0.05, 0.3, 12.0) for s in symbols]
    prices = np.full(len(symbols), 100.0)
    for i in range(count):
        ts = start + timedelta(seconds=0.5 * i)
        prices, sizes = simulator.step(
            params=params, last_prices=prices, slot=i, seed=1, interval=0.5
        )
        quotes = simulator.quotes(params=params, prices=prices, slot=i, seed=1)
        yield TickBatch(symbols=symbols, ts=[ts] * len(symbols), prices=prices, sizes=sizes,
                        quotes=quotes)  # fmt: skip


class MarketListener:
    """A channel-layer consumer of the market group, as a /ws/market socket's consumer in
    Daphne would be: in its own process, so that decoding every batch does not take the
    GIL from the pipeline as it would in a thread of this one."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._received = context.Value("q", 0)
        self._ready = context.Event()
        self._stop = context.Event()
        self._process = context.Process(
            target=_listen, args=(self._received, self._ready, self._stop), daemon=True
        )

    @property
    def received(self) -> int:
        return self._received.value

    def __enter__(self) -> MarketListener:
        self._process.start()
        if not self._ready.wait(60):
            raise RuntimeError("the market listener did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join(10)


def _listen(received, ready, stop) -> None:
    import django

    django.setup()  # DATABASE_URL and REDIS_URL came from the parent's environment
    asyncio.run(_consume(received, ready, stop))


async def _consume(received, ready, stop) -> None:
    from channels.layers import get_channel_layer

    from apps.streaming.groups import MARKET_GROUP
    from apps.streaming.publisher import MARKET_BATCH_EVENT

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(MARKET_GROUP, channel)
    ready.set()
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=0.5)
        except TimeoutError:
            continue
        if message["type"] == MARKET_BATCH_EVENT:  # the overview comes once a second too
            with received.get_lock():
                received.value += len(message["messages"])
    await layer.group_discard(MARKET_GROUP, channel)


def run_pipeline(n_symbols: int, n_batches: int, warmup: int, pace: float | None = None) -> dict:
    """Batches back to back (throughput), or one every `pace` seconds (the latency at the
    rate a deployment runs: TICK_INTERVAL is 0.5 s)."""
    from django.db import connection

    from apps.ingest.pipeline import ingest
    from apps.ingest.services import publish_overview_if_due
    from apps.market.services import symbols_seed
    from marketflux_site.celery import freeze_startup_objects

    with connection.cursor() as cursor:  # every run starts from empty tables, as they grow
        cursor.execute("TRUNCATE market_tick, market_bar, indicators_indicatorsnapshot")
    symbols = _symbols(n_symbols)
    symbols_seed(tickers=symbols)
    freeze_startup_objects()  # as each worker process does once started
    start = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=n_symbols % 97)
    latencies, stages, overlapped, overviews = [], {}, [], []
    stored = 0
    with MarketListener() as listener:
        began = None
        for i, batch in enumerate(_batches(symbols, warmup + n_batches, start)):
            if i == warmup:
                began, received_before = time.perf_counter(), listener.received
            if pace and began is not None:
                time.sleep(max(0.0, began + (i - warmup) * pace - time.perf_counter()))
            t0 = time.perf_counter()
            result = ingest(batch)
            elapsed = (time.perf_counter() - t0) * 1000.0
            # As the tick task does: the overview after the batch's ticks are out (in the
            # throughput, not in the batch's latency).
            sent = publish_overview_if_due(result.states)
            if sent and i >= warmup:
                overviews.append((time.perf_counter() - t0) * 1000.0 - elapsed)
            if i >= warmup:
                latencies.append(elapsed)
                stored += result.stored
                for stage, ms in result.stage_ms.items():
                    stages.setdefault(stage, []).append(ms)
                overlapped.append(result.overlapped_ms)
        wall = time.perf_counter() - began
        time.sleep(0.5)
        delivered = listener.received - received_before
    return {
        "symbols": n_symbols,
        "paced_s": pace,
        "batches": n_batches,
        "ticks": stored,
        "ticks_per_s": stored / wall,
        "latency_ms": summary(latencies),
        "stage_ms_mean": {k: sum(v) / len(v) for k, v in stages.items()},
        # indicator work done on the helper thread while `store` ran (not in the stages)
        "overlapped_ms_mean": sum(overlapped) / len(overlapped),
        "batches_overlapped": sum(1 for ms in overlapped if ms > 0),
        # the once-a-second market overview, sent after its batch
        "overview_ms": summary(overviews) if overviews else None,
        "overviews": len(overviews),
        "delivered_to_listener": delivered,
    }


def run_copy_reference(n_symbols: int, n_batches: int) -> dict:
    """Raw binary COPY of the same ticks into the tick table (no bars, no indicators)."""
    from django.db import connection

    from apps.market.services import symbols_seed

    with connection.cursor() as cursor:  # from an empty table, as the pipeline runs start
        cursor.execute("TRUNCATE market_tick")
    symbols = _symbols(n_symbols)
    symbols_seed(tickers=symbols)
    start = datetime(2025, 6, 2, tzinfo=UTC)
    batches = list(_batches(symbols, n_batches, start))
    rows = 0
    began = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        for batch in batches:
            with raw.copy(
                "COPY market_tick (symbol_id, ts, price, size) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["varchar", "timestamptz", "float8", "int4"])
                for row in zip(batch.symbols, batch.ts, batch.prices.tolist(),
                               batch.sizes.tolist(), strict=True):  # fmt: skip
                    copy.write_row(row)
            rows += len(batch)
    wall = time.perf_counter() - began
    return {"symbols": n_symbols, "rows": rows, "rows_per_s": rows / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batches")
    args = parser.parse_args()
    # 5,000 symbols: 150 batches (75 s of ticks) include the minute rollovers, where every
    # symbol starts a new bar, at their real share of one batch in 120.
    # Then 5,000 symbols paced at one batch every 0.5 s, for the latency targets' "one worker
    # keeps 5,000 symbols at two ticks a second".
    plan = [(5, 400, 20, None), (500, 150, 5, None), (5000, 150, 3, None), (5000, 150, 3, 0.5)]
    if args.quick:
        plan = [(5, 100, 5, None), (500, 20, 3, None), (5000, 8, 2, None), (5000, 8, 2, 0.5)]

    name = setup_django_with_bench_database()
    try:
        results = [run_pipeline(*run) for run in plan]
        copy = run_copy_reference(5000, plan[2][1])
    finally:
        drop_bench_database(name)

    rows = []
    for r in results:
        lat, ov = r["latency_ms"], r["overview_ms"]
        target = TARGET_P99_MS.get(r["symbols"])
        rows.append(
            [r["symbols"], f"every {r['paced_s']:g} s" if r["paced_s"] else "back to back",
             r["batches"], r["ticks_per_s"], lat["p50"], lat["p99"],
             f"< {target:g}" if target else "-",
             " ".join(f"{k}={v:.1f}" for k, v in r["stage_ms_mean"].items()),
             f"{r['overlapped_ms_mean']:.1f} ({r['batches_overlapped']}/{r['batches']})",
             f"{ov['p50']:.1f} / {ov['p99']:.1f} ({r['overviews']})" if ov else "-"]
        )  # fmt: skip
    print_table(
        "pipeline.ingest, every stage (PostgreSQL + indicators + Redis + channel layer)",
        [
            "symbols",
            "batches sent",
            "batches",
            "ticks/s",
            "p50 ms",
            "p99 ms",
            "p99 target",
            "mean ms per stage",
            "overlapped ms (batches)",
            "overview p50 / p99 ms (sent)",
        ],
        rows,
    )
    at_5000 = next(r for r in results if r["symbols"] == 5000 and not r["paced_s"])
    print_table(
        "reference: raw binary COPY of the same ticks into market_tick (5,000-symbol batches)",
        ["rows/s", "pipeline ticks/s", "pipeline / COPY", "target ticks/s"],
        [
            [
                copy["rows_per_s"],
                at_5000["ticks_per_s"],
                f"{at_5000['ticks_per_s'] / copy['rows_per_s']:.2f}",
                f">= {TARGET_TICKS_PER_S_AT_5000:,}",
            ]
        ],
    )
    write_results(
        "pipeline",
        {
            "pipeline": results,
            "binary_copy_reference": copy,
            "targets": {"ticks_per_s_at_5000": TARGET_TICKS_PER_S_AT_5000, "p99_ms": TARGET_P99_MS},
        },
    )


if __name__ == "__main__":
    main()
