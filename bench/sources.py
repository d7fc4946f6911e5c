"""Imports of recorded files (docs/sources.md#recorded-data): rows/s of `import_bars` and
`import_trades` on a million rows, beside a binary COPY of the same rows, and where the time
goes.

    python bench/sources.py [--quick]        (make bench runs it with real services)

On a fresh bench database, with files generated here (numpy, seeded), in the vendor's
flat-file columns:

- bars: 10 symbols x 100,000 one-minute bars (a year of regular-session minutes, 390 a day,
  the days back to back, each day's rows by ticker then time as Polygon/Massive's
  `minute_aggs_v1` day files are), as CSV and as Parquet. `services.import_bars` of the CSV
  (new), of the CSV again (every bar stored already: 0 new) and, after emptying the tables,
  of the Parquet. Reference: a binary COPY of the same rows into `market_bar` under ten
  scratch symbols;
- trades: 1,000,000 trades of 100 symbols over one hour (Zipf activity: the busiest has
  tens of trades in a 0.5 s slot, the quietest goes whole slots without one), by ticker then
  time as `trades_v1` day files are, as CSV. `services.import_trades` at 0.5 s slots.
  Reference: a binary COPY of the same rows into `market_tick` under scratch symbols.

Every import (but the second of the CSV, which is the point) and every COPY starts from
empty tables.

Where the time goes: reading and checking the file alone (`files.read_bars` /
`files.read_trades`, the iterator consumed), building the tick batches alone (conflation for
trades, the services' bar-to-tick columns for bars), and the ingest (the rest), with the
pipeline's own stages.

A live feed (bench/support/live_feed.py): 5,000 symbols of one Alpaca source, the loopback
Alpaca server (apps/testing/alpaca.py) in a process of its own on 127.0.0.1 pushing trades
(msgpack, 10 a frame, each stamped with the time it was built) for 20 s a run:

- anchor: to a plain WebSocket client that subscribes as the connector does and only reads
  and counts: the server's own send rate, in the same run;
- the real connector (`RunningConnector`: its event loop thread, the Store's database
  thread, `ingest` into PostgreSQL and Redis) as fast as the server sends, then at a paced
  10,000 trades/s: trades/s received (÷ the anchor), ticks stored/s, late trades, what
  was lost (trades counted by the connector's state against those sent; ticks stored
  against the distinct (symbol, 0.5 s slot) pairs sent; the trades and shares in them),
  the lag from a trade's receipt to its slot stored and from a slot's end to its ticks
  stored, and where the connector's time went: its loop thread's CPU by part (parse,
  conflator, closing slots, the rest), its time waiting for a CPU or blocked, and the
  database thread's ingest by stage and late folds.

`--quick`: 50,000 rows, 3 s of sending a run. Writes bench/results/sources.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    clear_app_redis_keys,
    drop_bench_database,
    print_table,
    setup_django_with_bench_database,
    summary,
    write_results,
)
from bench.support import live_feed

SEED = 17  # tracker issue 17
BAR_SYMBOLS = 10
SESSION_MINUTES = 390  # 09:30 to 16:00 New York
SESSION_OPEN_UTC = timedelta(hours=14, minutes=30)  # 09:30 EST (no daylight saving here)
TRADE_SYMBOLS = 100
TRADES_HOUR_S = 3600.0  # the full run's trades span one hour; --quick a shorter one
INTERVAL_S = 0.5  # TICK_INTERVAL
BATCH_ROWS = 200_000  # files.BATCH_ROWS, the import's batch
REPLAY_SYMBOLS = 100
REPLAY_MINUTES = 120  # two hours of minute data: 72 s at 100x (a day would be 14 minutes)
REPLAY_SPEED = 100.0
LIVE_SYMBOLS = 5_000
LIVE_SECONDS = 20.0  # of sending, each run; --quick: LIVE_QUICK_SECONDS
LIVE_QUICK_SECONDS = 3.0
LIVE_MOST = 4_000_000  # trades a run at most, whatever the time
LIVE_PACED_RATE = 10_000.0  # trades/s of the paced run: two a symbol a second
LIVE_FRAME = 10  # trades a frame (AlpacaServer's default batch)


# --- Files --------------------------------------------------------------------------------


def _weekdays(start: datetime, count: int) -> list[datetime]:
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def make_bar_files(
    rows: int, folder: Path, *, symbols: int = BAR_SYMBOLS, prefix: str = "BARS",
    by_time: bool = False,
) -> tuple[Path, Path]:  # fmt: skip
    """`rows` one-minute bars of `symbols` symbols, as `minute_aggs_v1` CSV and Parquet:
    day files back to back (by ticker, then time), or all in time order (`by_time`, what
    a replay reads)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    per_symbol = rows // symbols
    n_days = -(-per_symbol // SESSION_MINUTES)
    days = _weekdays(datetime(2025, 1, 2, tzinfo=UTC), n_days)
    minute_ns = 60 * 10**9
    starts = np.array(
        [int((d + SESSION_OPEN_UTC).timestamp()) * 10**9 for d in days], dtype=np.int64
    )
    ns = (starts[:, None] + np.arange(SESSION_MINUTES) * minute_ns).ravel()[:per_symbol]
    tickers = [f"{prefix}{i}" for i in range(symbols)]
    # A random walk of closes per symbol; each bar opens at the last close (or near it).
    returns = rng.normal(0.0, 0.0008, (symbols, per_symbol))
    closes = np.round(rng.uniform(20, 400, (symbols, 1)) * np.exp(np.cumsum(returns, 1)), 4)
    opens = np.empty_like(closes)
    opens[:, 0] = closes[:, 0]
    opens[:, 1:] = closes[:, :-1]
    opens = np.round(opens * (1 + rng.normal(0, 0.0001, opens.shape)), 4)
    wick = np.abs(rng.normal(0, 0.0005, (2, *closes.shape))) * closes
    highs = np.round(np.maximum(opens, closes) + wick[0], 4)
    lows = np.round(np.minimum(opens, closes) - wick[1], 4)
    volumes = np.maximum(1, rng.lognormal(8.0, 1.0, closes.shape).astype(np.int64))
    transactions = np.maximum(1, (volumes / rng.uniform(80, 200, closes.shape)).astype(np.int64))
    transactions = np.minimum(transactions, volumes)
    # Day files back to back, each by ticker then time: index (day, symbol, minute).
    day_of = np.arange(per_symbol) // SESSION_MINUTES
    minute_of = np.arange(per_symbol)[None, :].repeat(symbols, 0).ravel()
    symbol_of = np.repeat(np.arange(symbols), per_symbol)
    if by_time:
        order = np.lexsort((symbol_of, minute_of))
    else:
        order = np.lexsort((minute_of, symbol_of, np.tile(day_of, symbols)))
    table = pa.table(
        {
            "ticker": np.repeat(tickers, per_symbol)[order],
            "volume": volumes.ravel()[order],
            "open": opens.ravel()[order],
            "close": closes.ravel()[order],
            "high": highs.ravel()[order],
            "low": lows.ravel()[order],
            "window_start": np.tile(ns, symbols)[order],
            "transactions": transactions.ravel()[order],
        }
    )
    csv_path, parquet_path = folder / f"{prefix}.csv", folder / f"{prefix}.parquet"
    pacsv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    return csv_path, parquet_path


def make_trade_file(rows: int, folder: Path) -> Path:
    """`rows` trades of TRADE_SYMBOLS symbols, as a `trades_v1` CSV (by ticker, then time)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(SEED + 1)
    span_us = int(TRADES_HOUR_S * rows / 1_000_000 * 1e6)
    weights = 1.0 / np.arange(1, TRADE_SYMBOLS + 1)  # Zipf: the busiest 100 times the quietest
    counts = np.floor(weights / weights.sum() * rows).astype(np.int64)
    counts[0] += rows - counts.sum()
    start_us = int(datetime(2025, 3, 3, 14, 30, tzinfo=UTC).timestamp() * 1e6)
    columns = defaultdict(list)
    for i, count in enumerate(counts.tolist()):
        # Distinct microseconds in order (sorted draws plus their rank), nanoseconds within.
        us = np.sort(rng.integers(0, span_us - count, count)) + np.arange(count) + start_us
        sip = us * 1000 + rng.integers(0, 1000, count)
        price = np.round(rng.uniform(10, 500) * np.exp(np.cumsum(rng.normal(0, 2e-4, count))), 4)
        size = np.where(rng.random(count) < 0.6, 100, rng.integers(1, 2000, count))
        conditions = np.where(rng.random(count) < 0.3, "12,37", "")
        columns["ticker"].append(np.full(count, f"TRD{i:02d}"))
        columns["conditions"].append(conditions)
        columns["correction"].append(np.zeros(count, np.int64))
        columns["exchange"].append(rng.integers(1, 22, count))
        columns["id"].append(np.arange(1, count + 1).astype(str))
        columns["participant_timestamp"].append(sip - rng.integers(1000, 500_000, count))
        columns["price"].append(price)
        columns["sequence_number"].append(np.arange(count) * 7 + 1000 + i)
        columns["sip_timestamp"].append(sip)
        columns["size"].append(size)
        columns["tape"].append(np.full(count, 3, np.int64))
    table = pa.table({name: np.concatenate(parts) for name, parts in columns.items()})
    path = folder / "trades.csv"
    pacsv.write_csv(table, path)
    return path


# --- Measuring ----------------------------------------------------------------------------


class IngestMeter:
    """Times every `ingest` and `refresh_aggregates` call the import services make, with the
    pipeline's stages (`IngestResult.stage_ms`); the services are not changed, only the
    names they call are wrapped for the run."""

    def __init__(self) -> None:
        self.calls = 0
        self.ingest_s = 0.0
        self.stages: dict[str, float] = defaultdict(float)
        self.refresh_s = 0.0

    def __enter__(self) -> IngestMeter:
        from apps.sources import services

        self._saved = services.ingest, services.refresh_aggregates
        ingest, refresh = self._saved

        def timed_ingest(batch, **kwargs):
            t0 = time.perf_counter()
            result = ingest(batch, **kwargs)
            self.ingest_s += time.perf_counter() - t0
            self.calls += 1
            for stage, ms in result.stage_ms.items():
                self.stages[stage] += ms / 1000.0
            return result

        def timed_refresh(**kwargs):
            t0 = time.perf_counter()
            try:
                return refresh(**kwargs)
            finally:
                self.refresh_s += time.perf_counter() - t0

        services.ingest, services.refresh_aggregates = timed_ingest, timed_refresh
        return self

    def __exit__(self, *exc) -> None:
        from apps.sources import services

        services.ingest, services.refresh_aggregates = self._saved


def reset_store() -> None:
    """Empty ticks, bars and snapshots, and forget every indicator state (this process's and
    Redis's), as a fresh database would be; the symbols stay."""
    from django.db import connection

    from apps.indicators.state import store

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_tick, market_bar, indicators_indicatorsnapshot")
    store.forget()
    clear_app_redis_keys()


def run_import(kind: str, path: Path, *, label: str) -> dict:
    from apps.sources import files, services

    t0 = time.perf_counter()
    with IngestMeter() as meter:
        reading = services.Reading(path, files.FileFormat(), create_symbols=True)
        if kind == "bars":
            result = services.import_bars(reading)
        else:
            result = services.import_trades(reading, interval=INTERVAL_S)
    total = time.perf_counter() - t0
    return {
        "label": label,
        "file": path.name,
        "bytes": path.stat().st_size,
        "rows": result.rows,
        "ticks": result.ticks,
        "stored": result.stored,
        "symbols_created": len(result.created),
        "seconds": total,
        "rows_per_s": result.rows / total,
        "ticks_per_s": result.ticks / total,
        "ingest_calls": meter.calls,
        "ingest_s": meter.ingest_s,
        "ingest_stage_s": dict(meter.stages),
        "refresh_aggregates_s": meter.refresh_s,
    }


def run_replay(path: Path, speed: float) -> dict:
    """`manage.py replay --bars` of the file at `speed` (0: as fast as it goes): wall time,
    ticks/s, and each slot's lag behind its time at that speed."""
    from apps.sources import files, replay, services

    reading = services.Reading(path, files.FileFormat(), create_symbols=True)
    t0 = time.perf_counter()
    outcome = replay.replay(reading, bars=True, interval=INTERVAL_S, speed=speed)
    seconds = time.perf_counter() - t0
    return {
        "speed": speed, "ticks": outcome.result.ticks, "seconds": seconds,
        "ticks_per_s": outcome.result.ticks / seconds, "slots": len(outcome.lags_ms) or None,
        "lag_ms": summary(outcome.lags_ms) if outcome.lags_ms else None,
    }  # fmt: skip


def time_read(kind: str, path: Path) -> tuple[float, list]:
    """Reading and checking alone: the iterator consumed; its batches kept for the next."""
    from apps.sources import files

    reader = files.read_bars if kind == "bars" else files.read_trades
    t0 = time.perf_counter()
    batches = [item[0] for item in reader(path, files.FileFormat())]
    return time.perf_counter() - t0, batches


def time_bar_batches(path: Path, read_s: float) -> float:
    """The bars turned into tick batches: `services.bar_ticks` (which reads the file and
    looks its symbols up as well) less the reading alone."""
    from apps.sources import files, services

    reading = services.Reading(path, files.FileFormat())
    t0 = time.perf_counter()
    for _ in services.bar_ticks(reading, result=services.ImportResult()):
        pass
    return time.perf_counter() - t0 - read_s


def time_conflation(trade_batches: list) -> tuple[float, int]:
    """Conflation alone, each read batch's trades at once (the service holds each symbol's
    last slot over to the next batch: a few ticks more or less, the same work)."""
    from apps.sources.conflation import conflate

    interval_ns = round(INTERVAL_S * 1e9)
    ticks = 0
    t0 = time.perf_counter()
    for trades in trade_batches:
        ticks += len(conflate(trades, interval_ns=interval_ns))
    return time.perf_counter() - t0, ticks


def copy_reference(table: str, columns: list[tuple[str, str, np.ndarray]]) -> dict:
    """Binary COPY of the rows into `table`, BATCH_ROWS a transaction as the import's
    batches; the payload built with `apps.ops.pgcopy.binary_copy` from numpy columns. The
    payload's building is timed apart from the COPY; rows/s counts both."""
    from django.db import connection, transaction

    from apps.ops.pgcopy import binary_copy

    names = ", ".join(name for name, _, _ in columns)
    rows = len(columns[0][2])
    build = copy = 0.0
    for lo in range(0, rows, BATCH_ROWS):
        t0 = time.perf_counter()
        payload = binary_copy([(kind, values[lo : lo + BATCH_ROWS]) for _, kind, values in columns])
        t1 = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as c:
                c.write(payload)
        build += t1 - t0
        copy += time.perf_counter() - t1
    return {"table": table, "rows": rows, "build_s": build, "copy_s": copy,
            "seconds": build + copy, "rows_per_s": rows / (build + copy)}  # fmt: skip


def copy_bars_reference(bars_batches: list) -> dict:
    """The file's bars into `market_bar` (interval 1m) under scratch symbols (`Z` + ticker)."""
    from apps.market.constants import BAR_INTERVAL_1M

    def cat(name):
        return np.concatenate([getattr(b, name) for b in bars_batches])

    symbols = np.char.add(b"Z", np.char.encode(cat("symbols").astype(str)))
    micros = cat("ns") // 1000
    return copy_reference("market_bar", [
        ("symbol_id", "text", symbols),
        ("interval", "text", np.full(len(symbols), BAR_INTERVAL_1M.encode(), dtype="S3")),
        ("ts", "timestamptz", micros), ("open", "float8", cat("opens")),
        ("high", "float8", cat("highs")), ("low", "float8", cat("lows")),
        ("close", "float8", cat("closes")), ("volume", "int8", cat("volumes")),
        ("trades", "int4", cat("trades")), ("last_tick_at", "timestamptz", micros),
    ])  # fmt: skip


def copy_trades_reference(trade_batches: list) -> dict:
    """The file's trades into `market_tick` under scratch symbols (`Z` + ticker), each
    trade a row (its time to the microsecond, distinct per symbol in these files)."""

    def cat(name):
        return np.concatenate([getattr(t, name) for t in trade_batches])

    symbols = np.char.add(b"Z", np.char.encode(cat("symbols").astype(str)))
    nan = np.full(len(symbols), np.nan)
    return copy_reference("market_tick", [
        ("symbol_id", "text", symbols), ("ts", "timestamptz", cat("ns") // 1000),
        ("price", "float8", cat("prices")), ("size", "int4", cat("sizes")),
        ("open", "float8", nan), ("high", "float8", nan), ("low", "float8", nan),
        ("trades", "int4", nan),
    ])  # fmt: skip


def breakdown(run: dict, read_s: float, build_s: float) -> dict:
    """Total = read and check + batch building (conflation) + ingest (the rest); the
    ingest's share as the pipeline's stages, the longer bars' refresh and the remainder."""
    ingest = run["seconds"] - read_s - build_s
    stages = run["ingest_stage_s"]
    return {
        "read_check_s": read_s,
        "build_batches_s": build_s,
        "ingest_s": ingest,
        "pipeline_stages_s": stages,
        "pipeline_outside_stages_s": run["ingest_s"] - sum(stages.values()),
        "refresh_aggregates_s": run["refresh_aggregates_s"],
        "rest_s": ingest - run["ingest_s"] - run["refresh_aggregates_s"],
    }


def _lost(run: dict) -> str:
    """What the connector did not turn into stored ticks, against what was sent: trades
    not counted, (symbol, slot) pairs without a tick, trades and shares not in a tick; and
    tick by tick, ticks missing, extra, or with fewer or more trades than were sent."""
    sent, stored = run["sender"], run["stored"]
    missing = {
        "trades": sent["delivered"] - run["trades"], "ticks": sent["pairs"] - stored["ticks"],
        "trades in ticks": sent["trades"] - stored["trades"],
        "shares": sent["shares"] - stored["shares"],
    }  # fmt: skip
    missing.update((name.replace("_", " "), value) for name, value in stored["check"].items())
    wrong = [f"{value:,} {name}" for name, value in missing.items() if value]
    return ", ".join(wrong) or "none"


def _p(lag: dict | None) -> str:
    return "-" if lag is None else f"{lag['p50']:,.0f} / {lag['p99']:,.0f}"


def print_live(live: dict) -> None:
    """The live feed's tables: rates and what was lost, then where the time went."""
    anchor, runs = live["anchor"], {"connector, as fast as the server sends": live["flood"],
                                    f"connector, {live['paced']['rate_asked']:,.0f} trades/s":
                                    live["paced"]}  # fmt: skip
    a = anchor["trades_per_s"]
    print_table(
        f"live feed: Alpaca msgpack, {live['batch_size']} trades a frame, {live['symbols']:,} "
        f"symbols, from the loopback server (its own process, 127.0.0.1), "
        f"{live['seconds']:g} s of sending a run; anchor: the same server to a client that "
        f"only reads and counts; ticks expected = distinct (symbol, {live['interval_s']:g} s "
        "slot) pairs sent; lag ms p50 / p99",
        ["run", "trades sent", "sent/s", "received/s", "÷ anchor", "ticks (expected)",
         "ticks/s", "late trades", "lost", "receipt→stored", "slot end→stored",
         "sent→receipt"],
        [["reader that counts (anchor)", anchor["sender"]["trades"], a,
          anchor["received"] / anchor["seconds"], "1", "-", "-", "-",
          f"{anchor['sender']['delivered'] - anchor['received']:,}" if
          anchor["received"] != anchor["sender"]["delivered"] else "none", "-", "-", "-"]]
        + [[label, r["sender"]["trades"], r["sender"]["trades"] / r["sender"]["seconds"],
            r["trades_per_s"], f"{r['trades_per_s'] / a:.2f}",
            f"{r['stored']['ticks']:,} ({r['sender']['pairs']:,})", r["ticks_per_s"],
            r["state"]["late"], _lost(r), _p(r["lag"]["receipt_to_stored_ms"]),
            _p(r["lag"]["slot_end_to_stored_ms"]), _p(r["lag"]["sent_to_receipt_ms"])]
           for label, r in runs.items()],
    )  # fmt: skip
    rows = []
    for label, r in runs.items():
        loop, trades, cpu = r["threads_receiving"]["loop"], r["trades"], r["loop_cpu_s"]
        parts = [cpu.get(k, 0.0) for k in ("parse", "take", "close")]
        rest = loop["cpu_s"] - sum(parts)
        rows.append([label, loop["wall_s"], loop["cpu_s"], loop["run_queue_s"],
                     loop["wall_s"] - loop["cpu_s"] - loop["run_queue_s"],
                     *(1e6 * x / trades for x in (*parts, rest, loop["cpu_s"]))])  # fmt: skip
    print_table(
        "live feed, the connector's event loop thread from the first trade sent to the last "
        "received: seconds on a CPU, waiting for one, and blocked (the GIL, or nothing to "
        "read); its CPU per trade, µs",
        ["run", "s", "on CPU", "waiting for CPU", "blocked", "parse", "into conflator",
         "close slots", "rest (websockets, asyncio)", "all"],
        rows,
    )  # fmt: skip
    rows = []
    for label, r in runs.items():
        db, stages = r["threads_to_the_end"]["db"], r["ingest_stage_s"]
        main_stages = [stages.get(k, 0.0) for k in ("store", "indicators", "snapshots")]
        calls, ingests = r["calls"], r["calls"].get("ingest", 0)
        rows.append([label, ingests, r["ticks_live"] / max(ingests, 1), r["states_rebuilt"],
                     r["ingest_wall_s"], *main_stages, sum(stages.values()) - sum(main_stages),
                     calls.get("fold", 0), r["db_cpu_s"].get("fold (db thread)", 0.0),
                     db["cpu_s"], db["run_queue_s"]])  # fmt: skip
    print_table(
        "live feed, storing (the database thread, to the last slot stored), seconds",
        ["run", "ingest calls", "ticks a call", "states rebuilt", "ingest", "store",
         "indicators", "snapshots",
         "other stages", "late folds", "fold CPU", "db thread CPU", "db waiting for CPU"],
        rows,
    )  # fmt: skip

    def share(thread: dict) -> str:  # on a CPU, and waiting for one, in % of the window
        wall = thread["wall_s"]
        return (f"{100 * thread['cpu_s'] / wall:.0f} % on a CPU + "
                f"{100 * thread['run_queue_s'] / wall:.0f} % waiting for one")  # fmt: skip

    threads = anchor["threads"]
    print(f"\nlive feed, anchor: sender {share(threads['sender'])}, reader "
          f"{share(threads['reader'])}, of {threads['sender']['wall_s']:.1f} s")  # fmt: skip
    for label, r in runs.items():
        print(f"{label}: sender {share(r['threads_receiving']['sender'])}, connector's loop "
              f"{share(r['threads_receiving']['loop'])}")  # fmt: skip
    print("machine busy (all CPUs): " + ", ".join(
        f"{r['machine_busy_pct']:.0f} %" for r in (anchor, *runs.values()))
        + "; load average before each run: " + ", ".join(
        f"{r['loadavg_before']:.1f}" for r in (anchor, *runs.values())))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true",
        help="50,000 rows instead of 1,000,000; 3 s of live feed a run instead of 20 s",
    )  # fmt: skip
    args = parser.parse_args()
    rows = 50_000 if args.quick else 1_000_000

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mf-bench-sources-") as folder:
        t0 = time.perf_counter()
        bars_csv, bars_parquet = make_bar_files(rows, Path(folder))
        trades_csv = make_trade_file(rows, Path(folder))
        replay_minutes = 10 if args.quick else REPLAY_MINUTES
        replay_csv, _ = make_bar_files(
            REPLAY_SYMBOLS * replay_minutes,
            Path(folder),
            symbols=REPLAY_SYMBOLS,
            prefix="RPL",
            by_time=True,
        )
        generate_s = time.perf_counter() - t0
        print(f"files generated in {generate_s:.1f} s", flush=True)

        name = setup_django_with_bench_database()
        try:
            clear_app_redis_keys()
            # Bars: reading alone, the batches alone, then the imports and the COPY.
            read_bars_csv_s, bar_batches = time_read("bars", bars_csv)
            read_bars_parquet_s, _ = time_read("bars", bars_parquet)
            print(f"bars read: CSV {read_bars_csv_s:.1f} s, Parquet {read_bars_parquet_s:.1f} s",
                  flush=True)  # fmt: skip
            bars_first = run_import("bars", bars_csv, label="CSV, new")
            build_bars_s = time_bar_batches(bars_csv, read_bars_csv_s)  # the symbols exist now
            print(f"import_bars CSV: {bars_first['seconds']:.1f} s", flush=True)
            bars_again = run_import("bars", bars_csv, label="CSV again (all stored)")
            print(f"import_bars CSV again: {bars_again['seconds']:.1f} s", flush=True)
            reset_store()
            bars_parquet_run = run_import("bars", bars_parquet, label="Parquet, new")
            print(f"import_bars Parquet: {bars_parquet_run['seconds']:.1f} s", flush=True)
            reset_store()  # each COPY into empty tables, as each import starts
            copy_bars = copy_bars_reference(bar_batches)
            del bar_batches
            reset_store()
            # Trades.
            read_trades_s, trade_batches = time_read("trades", trades_csv)
            conflate_s, conflated_ticks = time_conflation(trade_batches)
            print(f"trades read {read_trades_s:.1f} s, conflated {conflate_s:.1f} s", flush=True)
            trades_run = run_import("trades", trades_csv, label="CSV, new")
            print(f"import_trades CSV: {trades_run['seconds']:.1f} s", flush=True)
            reset_store()
            copy_trades = copy_trades_reference(trade_batches)
            del trade_batches
            reset_store()
            # Replay: at 100x (a slot every 0.6 s), then as fast as it goes.
            replays = []
            for speed in (REPLAY_SPEED, 0.0):
                replays.append(run_replay(replay_csv, speed))
                print(f"replay at {speed:g}x: {replays[-1]['seconds']:.1f} s", flush=True)
                reset_store()
            # A live feed: the loopback Alpaca server, a reader that counts, the connector.
            from django.conf import settings

            live = live_feed.run_live(
                symbols=LIVE_SYMBOLS, seconds=LIVE_QUICK_SECONDS if args.quick else LIVE_SECONDS,
                paced_rate=LIVE_PACED_RATE, most=LIVE_MOST, batch_size=LIVE_FRAME,
                interval=INTERVAL_S, late_after=settings.MARKETFLUX_SOURCE_LATE_AFTER,
                reset=reset_store,
            )  # fmt: skip
        finally:
            drop_bench_database(name)

    bars_runs = [bars_first, bars_again, bars_parquet_run]
    print_table(
        f"import_bars, {rows:,} one-minute bars ({BAR_SYMBOLS} symbols, days of "
        f"{SESSION_MINUTES} minutes); reference: binary COPY of the rows into market_bar",
        ["file", "MB", "rows", "new ticks", "s", "rows/s", "COPY rows/s", "import / COPY"],
        [[r["label"], r["bytes"] / 1e6, r["rows"], r["stored"], r["seconds"], r["rows_per_s"],
          copy_bars["rows_per_s"], f"{r['rows_per_s'] / copy_bars['rows_per_s']:.3f}"]
         for r in bars_runs],
    )  # fmt: skip
    t = trades_run
    print_table(
        f"import_trades, {rows:,} trades ({TRADE_SYMBOLS} symbols, {INTERVAL_S:g} s slots); "
        "reference: binary COPY of the rows into market_tick",
        ["MB", "trades", "ticks", "trades / tick", "s", "trades/s", "ticks/s", "COPY rows/s",
         "import / COPY"],
        [[t["bytes"] / 1e6, t["rows"], t["ticks"], t["rows"] / t["ticks"], t["seconds"],
          t["rows_per_s"], t["ticks_per_s"], copy_trades["rows_per_s"],
          f"{t['rows_per_s'] / copy_trades['rows_per_s']:.3f}"]],
    )  # fmt: skip
    print_table(
        f"replay --bars of {replay_minutes} minutes of {REPLAY_SYMBOLS} symbols' 1-minute bars "
        f"(in time order), through the live pipeline; lag = when a minute went out - its time "
        f"at the speed (at {REPLAY_SPEED:g}x a minute is {60 / REPLAY_SPEED:.1f} s)",
        ["speed", "ticks", "s", "ticks/s", "lag p50 ms", "lag p99 ms", "lag max ms"],
        [[f"{r['speed']:g}x" if r["speed"] else "max", r["ticks"], r["seconds"],
          r["ticks_per_s"], *((r["lag_ms"]["p50"], r["lag_ms"]["p99"], r["lag_ms"]["max"])
                              if r["lag_ms"] else ("-", "-", "-"))] for r in replays],
    )  # fmt: skip
    where = {
        "import_bars CSV": breakdown(bars_first, read_bars_csv_s, build_bars_s),
        "import_bars CSV again": breakdown(bars_again, read_bars_csv_s, build_bars_s),
        "import_bars Parquet": breakdown(bars_parquet_run, read_bars_parquet_s, build_bars_s),
        "import_trades CSV": breakdown(trades_run, read_trades_s, conflate_s),
    }
    runs = {"import_bars CSV": bars_first, "import_bars CSV again": bars_again,
            "import_bars Parquet": bars_parquet_run,
            "import_trades CSV": trades_run}  # fmt: skip
    stage_names = ["store", "indicators", "snapshots", "commit"]
    print_table(
        "where the time goes, seconds (ingest = total - read/check - batches; of it: the "
        "pipeline's stages, the rest of ingest(), the longer bars' refresh, the service's own)",
        ["import", "total", "read+check", "batches", "ingest", *stage_names,
         "ingest() other", "refresh", "service other"],
        [[label, runs[label]["seconds"], w["read_check_s"], w["build_batches_s"], w["ingest_s"],
          *(w["pipeline_stages_s"].get(s, 0.0) for s in stage_names),
          w["pipeline_outside_stages_s"]
          + sum(v for k, v in w["pipeline_stages_s"].items() if k not in stage_names),
          w["refresh_aggregates_s"], w["rest_s"]] for label, w in where.items()],
    )  # fmt: skip
    print(f"\nCOPY references: bars {copy_bars['build_s']:.2f} s building the payload + "
          f"{copy_bars['copy_s']:.2f} s COPY; trades {copy_trades['build_s']:.2f} + "
          f"{copy_trades['copy_s']:.2f} s. Conflation alone: {conflated_ticks:,} ticks. "
          f"Whole run {time.perf_counter() - began:.0f} s.")  # fmt: skip
    print_live(live)
    write_results(
        "sources",
        {
            "quick": args.quick,
            "rows": rows,
            "files": {
                "bar_symbols": BAR_SYMBOLS,
                "trade_symbols": TRADE_SYMBOLS,
                "trades_span_s": TRADES_HOUR_S * rows / 1_000_000,
                "interval_s": INTERVAL_S,
                "generate_s": generate_s,
            },
            "import_bars": bars_runs,
            "import_trades": trades_run,
            "read_check_s": {
                "bars_csv": read_bars_csv_s,
                "bars_parquet": read_bars_parquet_s,
                "trades_csv": read_trades_s,
            },
            "build_batches_s": {"bars": build_bars_s, "trades_conflation": conflate_s},
            "replay": {"minutes": replay_minutes, "symbols": REPLAY_SYMBOLS, "runs": replays},
            "live": live,
            "conflation_ticks": conflated_ticks,
            "where_the_time_goes": where,
            "binary_copy_reference": {
                "bars_into_market_bar": copy_bars,
                "trades_into_market_tick": copy_trades,
            },
        },
    )


if __name__ == "__main__":
    main()
