"""Seed history: 1-minute bars from the market simulator, ending where live data begins.

Benchmarks and the dashboard want a year of candles long before the live pipeline has
produced one. `backfill` writes simulated 1-minute bars (the `Bar` table, interval '1m';
see docs/architecture.md#tables) for the days before a symbol's earliest stored tick or
bar, so that the history joins the live data without a price gap:

- Window. For each symbol, `end` is the start of the minute of its earliest 1-minute bar
  or tick (the current minute when it has none), and the backfill fills
  [now - days, end): afterwards the symbol has `days` of history up to now. Anchoring the
  window at `now` rather than at `end` is what makes a re-run a no-op: the bars a first
  run wrote are themselves the earliest data the second run sees.
- Prices. The simulator (`simulator.step`, geometric Brownian motion with jumps) runs at
  5-second sub-steps, 12 per bar, so each bar has a real open, high, low and close. The
  path is scaled so that its last close equals the first live price
  (the earliest tick's price, else the earliest bar's open, else `Symbol.start_price`).
  A scaled GBM path is still a GBM path, and scaling forward from any start price is the
  same as walking the step ratios backwards from the anchor, which is what is done: the
  newest chunk is generated and written first, each chunk in its own transaction, with
  memory bounded by the chunk size. A run that stops half-way leaves a history that
  still ends at the live data, and the next run continues it further back.
- Volume and trades. A bar has the live market's trades per minute (one tick every
  TICK_INTERVAL: 120) and the volume of that many trades (`simulator.minute_volumes`), so
  the history and the live bars after it have the same statistics.
- Writes. Each chunk goes by binary COPY straight into the table, or, if some of its bars
  exist already, into a session-local staging table and then `INSERT ... ON CONFLICT DO
  NOTHING`: no existing bar is ever changed.
- The longer bars are refreshed over each chunk once it is committed: TimescaleDB's
  continuous aggregates (their refresh policy only looks at the last days), or on plain
  PostgreSQL the roll-up of closed buckets (`apps.market.rollup`).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction

from apps.market import keys, rollup, simulator, timescale
from apps.market.constants import BAR_INTERVAL_1M, BAR_INTERVALS, CONTINUOUS_AGGREGATE_VIEWS
from apps.market.models import Symbol
from apps.ops.pgcopy import binary_copy
from apps.ops.redis_client import redis_client
from apps.ops.timestamps import UNIX_EPOCH, floor_to

MAX_DAYS = 3650
SUBSTEP_SECONDS = 5
SUBSTEPS_PER_MINUTE = 60 // SUBSTEP_SECONDS
# Randomness is keyed per symbol and hour, so `simulator.step` (vectorised over what it is
# given) runs once per sub-step of the hour across every (symbol, hour) of a chunk: 720
# calls per chunk instead of one per 5 seconds of history.
_SUBSTEPS_PER_HOUR = 3600 // SUBSTEP_SECONDS
CHUNK_ROWS = 100_000  # bars per COPY and transaction: memory stays near 100 MB for any length

_MINUTE = timedelta(minutes=1)
_MINUTE_MICROS = 60_000_000


class BackfillError(ValueError):
    """Arguments the backfill cannot run with (the message says which and why)."""


@dataclass(frozen=True)
class Window:
    """What one symbol gets: bars for [start, end), the last close equal to `anchor`."""

    symbol: Symbol
    start: datetime
    end: datetime
    anchor: float

    @property
    def minutes(self) -> int:
        return max(0, (self.end - self.start) // _MINUTE)


@dataclass
class BackfillResult:
    """What a run did: rows inserted, the windows it covered and how long it took."""

    rows: int = 0
    windows: list[Window] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)  # aggregates or intervals refreshed
    seconds: float = 0.0

    @property
    def start(self) -> datetime | None:
        return min((w.start for w in self.windows if w.minutes), default=None)

    @property
    def end(self) -> datetime | None:
        return max((w.end for w in self.windows if w.minutes), default=None)


def resolve_symbols(tickers: list[str] | None) -> list[Symbol]:
    """The named symbols (all active ones by default); unknown names fail, all of them named."""
    if not tickers:
        return list(Symbol.objects.filter(active=True).order_by("ticker"))
    wanted = list(dict.fromkeys(t.strip().upper() for t in tickers if t.strip()))
    found = {s.ticker: s for s in Symbol.objects.filter(ticker__in=wanted)}
    unknown = [t for t in wanted if t not in found]
    if unknown:
        raise BackfillError(f"unknown symbols: {', '.join(unknown)}")
    return [found[t] for t in sorted(wanted)]


# One forward index probe per symbol and table (the composite keys lead with the symbol).
_EARLIEST = """
SELECT s.ticker, b.ts, b.open, t.ts, t.price
FROM unnest(%(tickers)s::varchar[]) AS s(ticker)
LEFT JOIN LATERAL (
    SELECT ts, open FROM market_bar
    WHERE symbol_id = s.ticker AND interval = %(interval)s ORDER BY ts LIMIT 1
) AS b ON true
LEFT JOIN LATERAL (
    SELECT ts, price FROM market_tick WHERE symbol_id = s.ticker ORDER BY ts LIMIT 1
) AS t ON true
"""


def plan(*, symbols: list[Symbol], days: int, now: datetime) -> list[Window]:
    """Each symbol's window and anchor, from its earliest stored bar and tick."""
    if not symbols:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _EARLIEST, {"tickers": [s.ticker for s in symbols], "interval": BAR_INTERVAL_1M}
        )
        earliest = {row[0]: row[1:] for row in cursor.fetchall()}
    now = floor_to(now, _MINUTE)
    windows = []
    for symbol in symbols:
        bar_ts, bar_open, tick_ts, tick_price = earliest[symbol.ticker]
        tick_minute = floor_to(tick_ts, _MINUTE) if tick_ts is not None else None
        if tick_minute is not None and (bar_ts is None or tick_minute <= bar_ts):
            end, anchor = tick_minute, tick_price
        elif bar_ts is not None:
            end, anchor = bar_ts, bar_open
        else:
            end, anchor = now, symbol.start_price
        # `days` up to now; up to `end` if stored data lies ahead of now (a skewed clock).
        start = min(max(now, end) - timedelta(days=days), end)
        windows.append(Window(symbol=symbol, start=start, end=end, anchor=anchor))
    return windows


@dataclass(frozen=True)
class Chunk:
    """Bars of some symbols over the same minutes: arrays are (symbols, minutes)."""

    tickers: list[str]
    minutes: np.ndarray  # epoch minutes, int64
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def rows(self) -> int:
        return self.open.size


def check_days(days: object) -> None:
    """BackfillError unless `days` is a whole number of days a backfill can cover."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise BackfillError(f"days must be an integer from 1 to {MAX_DAYS}, not {days!r}")


def _restart_sessions(tickers: list[str]) -> None:
    """The day's volume and open now include bars no worker has seen: every worker drops
    its indicator and session states and rebuilds them from the database (their shared
    copies in Redis go too), so the live volume agrees with the day's 1d bar again."""
    pipe = redis_client().pipeline(transaction=False)
    pipe.hdel(keys.PIPELINE_STATE, *tickers)
    pipe.set(keys.PIPELINE_STATE_VERSION, uuid.uuid4().hex)
    pipe.execute()


def live_trades_per_minute() -> int:
    """Trades in a live 1-minute bar: one tick per symbol every TICK_INTERVAL."""
    return max(1, round(60 / settings.TICK_INTERVAL))


def _epoch_minute(ts: datetime) -> int:
    return (ts - UNIX_EPOCH) // _MINUTE


def simulate(*, windows: list[Window], seed: int, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Bars for symbols sharing one window, newest chunk first, each chunk ~`chunk_rows` bars.

    The bars are a pure function of the seed, the symbols' parameters, the window and the
    anchors: how the window is cut into chunks changes only the last bits of the floats.
    """
    if not windows or windows[0].minutes == 0:
        return
    start, end = _epoch_minute(windows[0].start), _epoch_minute(windows[0].end)
    if any((_epoch_minute(w.start), _epoch_minute(w.end)) != (start, end) for w in windows):
        raise ValueError("simulate() takes windows that share start and end")
    tickers = [w.symbol.ticker for w in windows]
    params = [
        simulator.SimulatorParams(s.ticker, s.drift, s.volatility, s.jump_rate)
        for s in (w.symbol for w in windows)
    ]
    n = len(windows)
    carry = np.array([w.anchor for w in windows], dtype=np.float64)  # price at chunk end
    hours_per_chunk = max(1, chunk_rows // (60 * n))
    first_hour, last_hour = start // 60, -(-end // 60)  # whole hours covering the window
    hour_hi = last_hour
    while hour_hi > first_hour:
        hour_lo = max(first_hour, hour_hi - hours_per_chunk)
        hours = hour_hi - hour_lo
        # One simulator "symbol" per (symbol, hour): its own counter-based random stream.
        hourly = [
            simulator.SimulatorParams(f"{p.ticker}@{h}", p.drift, p.volatility, p.jump_rate)
            for p in params
            for h in range(hour_lo, hour_hi)
        ]
        ones = np.ones(len(hourly))
        ratios = np.empty((_SUBSTEPS_PER_HOUR, len(hourly)))
        for slot in range(_SUBSTEPS_PER_HOUR):
            ratios[slot], _ = simulator.step(
                params=hourly, last_prices=ones, slot=slot, seed=seed, interval=SUBSTEP_SECONDS
            )
        # (slot, symbol*hour) -> (symbol, minute, sub-step), in time order.
        shape = (n, hours * 60, SUBSTEPS_PER_MINUTE)
        ratios = ratios.T.reshape(shape)
        lo = max(start, hour_lo * 60) - hour_lo * 60
        hi = min(end, hour_hi * 60) - hour_lo * 60
        ratios = ratios[:, lo:hi].reshape(n, -1)
        # Walk back from the known last price: p[k] = p[last] / prod(ratios[k+1:]).
        log_path = np.cumsum(np.log(ratios), axis=1)
        prices = carry[:, None] * np.exp(log_path - log_path[:, -1:])  # last one is exact
        carry = prices[:, 0] / ratios[:, 0]  # the price before this chunk's first sub-step
        prices = prices.reshape(n, hi - lo, SUBSTEPS_PER_MINUTE)
        minutes = np.arange(hour_lo * 60 + lo, hour_lo * 60 + hi, dtype=np.int64)
        yield Chunk(
            tickers=tickers,
            minutes=minutes,
            open=prices[:, :, 0],
            high=prices.max(axis=2),
            low=prices.min(axis=2),
            close=prices[:, :, -1],
            # As many trades as the live market makes in a minute, not one per sub-step:
            # the live bars that follow must not look like a volume spike.
            volume=simulator.minute_volumes(
                tickers=tickers, minutes=minutes, seed=seed, trades=live_trades_per_minute()
            ),
        )
        hour_hi = hour_lo


_COPY_COLUMNS = "symbol_id, interval, ts, open, high, low, close, volume, trades"


def copy_payload(chunk: Chunk) -> bytes:
    """The chunk as one binary COPY stream (`apps.ops.pgcopy`), no per-row Python: the
    symbols go as one numpy bytes array."""
    n, m = len(chunk.tickers), len(chunk.minutes)
    return binary_copy(
        [
            ("text", np.repeat(np.array([t.encode() for t in chunk.tickers]), m)),
            ("text", np.full(n * m, BAR_INTERVAL_1M.encode())),
            ("timestamptz", np.tile(chunk.minutes * _MINUTE_MICROS, n)),
            ("float8", chunk.open.ravel()),
            ("float8", chunk.high.ravel()),
            ("float8", chunk.low.ravel()),
            ("float8", chunk.close.ravel()),
            ("int8", chunk.volume.ravel()),
            ("int4", np.full(n * m, live_trades_per_minute(), dtype=np.int32)),
        ]
    )


_COPY_BARS = f"COPY market_bar ({_COPY_COLUMNS}) FROM STDIN (FORMAT binary)"
_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS backfill_staged_bars
(LIKE market_bar INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
_COPY_STAGING = f"COPY backfill_staged_bars ({_COPY_COLUMNS}) FROM STDIN (FORMAT binary)"
_STORE_STAGED = f"""
INSERT INTO market_bar ({_COPY_COLUMNS})
SELECT {_COPY_COLUMNS} FROM backfill_staged_bars
ON CONFLICT (symbol_id, interval, ts) DO NOTHING
"""  # noqa: S608 (column names from a constant)


def write_bars(chunk: Chunk, payload: bytes | None = None) -> int:
    """Store a chunk in one transaction, keeping any bar already there; returns rows added.

    The window lies before the symbol's earliest stored data, so the bars are normally new
    and go straight in by COPY (about three times faster than an insert from staging).
    Only if some already exist (another backfill running at the same time) does that
    conflict; then the chunk goes through staging and `ON CONFLICT DO NOTHING`.
    """
    payload = copy_payload(chunk) if payload is None else payload
    with transaction.atomic(), connection.cursor() as cursor:
        try:
            with transaction.atomic(), cursor.cursor.copy(_COPY_BARS) as copy:
                copy.write(payload)
            return chunk.rows
        except psycopg.errors.UniqueViolation:  # raised by psycopg's own COPY cursor
            pass
        cursor.execute(_CREATE_STAGING)
        cursor.execute("TRUNCATE backfill_staged_bars")  # inside a caller's transaction too
        with cursor.cursor.copy(_COPY_STAGING) as copy:
            copy.write(payload)
        cursor.execute(_STORE_STAGED)
        return cursor.rowcount


def refresh_aggregates(
    *, start: datetime, end: datetime, tickers: list[str] | None = None
) -> list[str]:
    """Re-materialise the longer bars over [start, end), widened to whole buckets.

    On TimescaleDB, the continuous aggregates: their refresh policy only looks at the last
    days, so history written further back would stay missing (or stale) in the longer
    bars. Timescale refreshes only buckets that lie wholly inside the window, and refuses
    to run inside a transaction. On plain PostgreSQL, the roll-up of closed buckets, for
    the same reason. Either way the bucket still open now is left to read-time
    aggregation: materialising it would freeze it until the next refresh reaches it.
    Returns what was refreshed (views, or intervals rolled up).
    """
    now = datetime.now(UTC)
    refreshed = []
    installed = timescale.installed(connection)
    with connection.cursor() as cursor:
        for interval in rollup.ROLLUP_INTERVALS:
            step = BAR_INTERVALS[interval]
            lo = floor_to(start, step)
            hi = min(floor_to(end - timedelta(microseconds=1), step) + step, floor_to(now, step))
            if lo >= hi:
                continue
            if installed:
                view = CONTINUOUS_AGGREGATE_VIEWS[interval]
                cursor.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s, %s)", [view, lo, hi]
                )
                refreshed.append(view)
            else:
                rollup.rollup_range(interval=interval, start=lo, end=hi, tickers=tickers)
                refreshed.append(interval)
    return refreshed


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def _ahead(items: Iterator, depth: int = 1) -> Iterator:
    """Iterate `items` in a thread, `depth` items ahead of the caller.

    Simulating a chunk is CPU work in this process and storing one is mostly waiting for
    PostgreSQL, so doing both at once takes about the time of the slower one.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the caller, who re-raises it
            put(_Failed(error))

    thread = threading.Thread(target=produce, name="backfill-simulate", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def _payloads(windows: list[Window], seed: int, chunk_rows: int) -> Iterator[tuple[Chunk, bytes]]:
    for chunk in simulate(windows=windows, seed=seed, chunk_rows=chunk_rows):
        yield chunk, copy_payload(chunk)


def backfill(
    *,
    symbols: list[Symbol],
    days: int,
    seed: int,
    now: datetime | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    """Give each symbol `days` of 1-minute bars up to now, joined to its live data.

    `progress(done, total)`, when given, is called once the windows are planned (0 of the
    bars to simulate) and after each chunk is stored and refreshed: bars simulated so far,
    of all. `done` counts bars covered, written or found stored already (`result.rows`
    counts those written).
    """
    check_days(days)
    if timescale.installed(connection) and connection.in_atomic_block:
        raise BackfillError(
            "run the backfill outside a transaction: TimescaleDB refreshes its continuous"
            " aggregates only in autocommit mode"
        )
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    today = _epoch_minute(floor_to(now, timedelta(days=1)))
    result = BackfillResult(windows=plan(symbols=symbols, days=days, now=now))
    groups: dict[tuple[datetime, datetime], list[Window]] = {}
    for window in result.windows:
        if window.minutes:
            groups.setdefault((window.start, window.end), []).append(window)
    total = sum(window.minutes for window in result.windows)
    done = 0
    if progress is not None:
        progress(done, total)
    per_batch = max(1, chunk_rows // 60)  # symbols per simulation, so a chunk stays bounded
    refreshed: set[str] = set()
    into_today: set[str] = set()  # symbols whose current UTC day got bars
    for group in groups.values():
        for i in range(0, len(group), per_batch):
            batch = group[i : i + per_batch]
            for chunk, payload in _ahead(_payloads(batch, seed, chunk_rows)):
                written = write_bars(chunk, payload)
                result.rows += written
                if written and chunk.minutes[-1] >= today:
                    into_today.update(chunk.tickers)
                if written:  # right after its commit, so a stopped run leaves nothing stale
                    refreshed.update(
                        refresh_aggregates(
                            start=UNIX_EPOCH + int(chunk.minutes[0]) * _MINUTE,
                            end=UNIX_EPOCH + int(chunk.minutes[-1] + 1) * _MINUTE,
                            tickers=[w.symbol.ticker for w in batch],
                        )
                    )
                done += chunk.rows
                if progress is not None:
                    progress(done, total)
    result.refreshed = sorted(refreshed)
    if into_today:
        _restart_sessions(sorted(into_today))
    if result.rows:  # the planner's row estimates, else it plans for an empty table
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE market_bar")
    result.seconds = time.perf_counter() - started
    return result
