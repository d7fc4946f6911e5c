"""The ingest pipeline (docs/architecture.md): every tick source hands its batches to `ingest`.

Each stage is a step of `ingest`. The database stages run in one transaction, so a batch
is stored whole or not at all, and every write is idempotent on its key: replaying a batch
(Celery redelivers with acks_late after a crash) stores nothing twice and reports no tick
as new, so the later stages (indicators, hot state, publishing) see only what this run
actually added and a replay publishes nothing twice.

The batch travels to PostgreSQL as one COPY into a session-local staging table; the ticks,
their 1-minute bars and what the state store needs to know come back from one statement.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import orjson
import psycopg
from django.db import IntegrityError, connection, transaction

from apps.alerts.evaluation import Evaluation
from apps.alerts.evaluation import evaluate as evaluate_alerts
from apps.indicators.engine import FIELDS, PRICE_MAX
from apps.indicators.state import BatchStart
from apps.indicators.state import store as state_store
from apps.ingest import metrics
from apps.market import keys, messages
from apps.market.constants import BAR_INTERVAL_1M
from apps.market.models import TICKER_PATTERN
from apps.market.simulator import Quotes
from apps.ops import fanout
from apps.ops.pgcopy import binary_copy
from apps.ops.redis_client import Packed, execute_packed, pack, redis_client
from apps.ops.timestamps import epoch_micros


class BatchError(ValueError):
    """A batch that cannot be ingested as given (the message says which row and why)."""


@dataclass(frozen=True)
class Slots:
    """What a conflated tick keeps of its slot's trades (docs/sources.md#conflation): the
    first, highest and lowest prices and the count. A row of NaN: the tick is one trade."""

    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    trades: np.ndarray

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.opens, self.highs, self.lows, self.trades

    def take(self, rows: np.ndarray) -> Slots:
        return Slots(*(np.asarray(column)[rows] for column in self.columns()))

    @classmethod
    def none(cls, count: int) -> Slots:
        missing = np.full(count, np.nan)
        return cls(missing, missing, missing, missing)


@dataclass(frozen=True)
class TickBatch:
    """Ticks from one source run, as columns; `quotes` for a source that carries them (a
    row of NaN: that tick has none); `slots` for ticks that conflate several trades."""

    symbols: list[str]
    ts: list[datetime]
    prices: np.ndarray
    sizes: np.ndarray
    quotes: Quotes | None = None
    slots: Slots | None = None

    @classmethod
    def from_rows(cls, rows: Sequence[tuple]) -> TickBatch:
        """From `(symbol, ts, price, size)` rows, each optionally followed by its quote
        `bid, ask, bid_size, ask_size` (or four Nones)."""
        quotes = None
        if any(len(r) > 4 for r in rows):
            columns = [
                np.array([np.nan if len(r) <= k or r[k] is None else r[k] for r in rows],
                         dtype=np.float64)
                for k in range(4, 8)
            ]  # fmt: skip
            quotes = Quotes(*columns)
        return cls(
            symbols=[r[0] for r in rows],
            ts=[r[1] for r in rows],
            prices=np.array([r[2] for r in rows], dtype=np.float64),
            sizes=np.array([r[3] for r in rows], dtype=np.int64),
            quotes=quotes,
        )

    def __len__(self) -> int:
        return len(self.symbols)

    def validate(self) -> None:
        n = len(self.symbols)
        if not (len(self.ts) == len(self.prices) == len(self.sizes) == n):
            raise BatchError("symbols, ts, prices and sizes must have the same length")
        for i, symbol in enumerate(self.symbols):
            if not (type(symbol) is str and TICKER_PATTERN.match(symbol)):
                raise BatchError(f"row {i}: {symbol!r} is not a ticker")
        checked: set[int] = set()
        for i, ts in enumerate(self.ts):
            if id(ts) not in checked:  # a simulator batch shares one datetime object
                if not isinstance(ts, datetime) or ts.utcoffset() is None:
                    raise BatchError(f"row {i} ({self.symbols[i]}): ts must be timezone-aware")
                checked.add(id(ts))
        bad_price = ~(np.isfinite(self.prices) & (self.prices > 0) & (self.prices <= PRICE_MAX))
        if bad_price.any():
            i = int(np.argmax(bad_price))
            raise BatchError(f"row {i} ({self.symbols[i]}): price must be a positive number")
        bad_size = (self.sizes <= 0) | (self.sizes > 2**31 - 1)
        if bad_size.any():
            i = int(np.argmax(bad_size))
            raise BatchError(f"row {i} ({self.symbols[i]}): size must be a positive integer")
        if self.quotes is not None:
            self._validate_quotes(self.quotes)
        if self.slots is not None:
            self._validate_slots(self.slots)

    def _refuse_first(self, checks: list[tuple[np.ndarray, str]]) -> None:
        """A BatchError naming the first row that fails a check, the first check first."""
        for bad, problem in checks:
            if bad.any():
                i = int(np.argmax(bad))
                raise BatchError(f"row {i} ({self.symbols[i]}): {problem}")

    def _validate_slots(self, slots: Slots) -> None:
        if any(len(column) != len(self.symbols) for column in slots.columns()):
            raise BatchError("slots: opens, highs, lows and trades need a row per tick")
        columns = np.array(slots.columns(), dtype=np.float64)
        missing = np.isnan(columns)
        opens, highs, lows, trades = columns
        prices = self.prices
        with np.errstate(invalid="ignore"):
            checks = [
                (missing.any(axis=0) & ~missing.all(axis=0),
                 "a slot needs its open, high, low and trade count, or none of them"),
                (~missing[0] & ~((lows > 0) & (highs <= PRICE_MAX) & (lows <= opens)
                                 & (opens <= highs) & (lows <= prices) & (prices <= highs)),
                 "a slot's prices must be positive with low <= open, price <= high"),
                (~missing[0] & ~((trades >= 1) & (trades == np.floor(trades))
                                 & (trades <= 2**31 - 1)),
                 "a slot's trade count must be a positive integer"),
            ]  # fmt: skip
        self._refuse_first(checks)

    def _validate_quotes(self, quotes: Quotes) -> None:
        if any(len(column) != len(self.symbols) for column in quotes.columns()):
            raise BatchError("quotes: bids, asks and sizes need a row per tick")
        try:
            columns = np.array(quotes.columns(), dtype=np.float64)  # (4, n)
        except (TypeError, ValueError):
            raise BatchError("quotes: bids, asks and sizes must be numbers") from None
        missing = np.isnan(columns)
        checks = [
            (missing.any(axis=0) & ~missing.all(axis=0),
             "a quote needs a bid, an ask and both sizes, or none of them"),
            (~missing[0] & ~((columns[:2] > 0) & (columns[:2] <= PRICE_MAX)).all(axis=0),
             "bid and ask must be positive numbers"),
            (~missing[0] & ~((columns[2:] >= 1) & (columns[2:] <= 2**31 - 1)
                             & (columns[2:] == np.floor(columns[2:]))).all(axis=0),
             "bid and ask sizes must be positive integers"),
        ]  # fmt: skip
        self._refuse_first(checks)


@dataclass
class IngestResult:
    """What one `ingest` call did: the ticks it added and its timings per stage."""

    received: int
    stored: int = 0
    messages: list[dict] = field(default_factory=list)  # tick messages, as published
    states: dict[str, dict] = field(default_factory=dict)  # hot states written, by symbol
    rebuilt: list[str] = field(default_factory=list)  # symbols whose state was rebuilt
    alerts: int = 0  # alert events fired
    overlapped_ms: float = 0.0  # indicator work done on the helper thread during `store`
    stage_ms: dict[str, float] = field(default_factory=dict)


class _Stopwatch:
    def __init__(self, into: dict[str, float]):
        self.into = into
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.into[stage] = (now - self.last) * 1000.0
        self.last = now


_STAGING = "pipeline_staged_ticks"
_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    ord integer, symbol_id varchar(16), ts timestamptz, price float8, size integer,
    open float8, high float8, low float8, trades integer,
    bid float8, ask float8, bid_size integer, ask_size integer
) ON COMMIT DELETE ROWS
"""

_TICK_COLUMNS = "symbol_id, ts, price, size, open, high, low, trades, bid, ask, bid_size, ask_size"
_UNKNOWN_SYMBOLS = f"""
SELECT array_agg(DISTINCT s.symbol_id) FROM {_STAGING} s
WHERE NOT EXISTS (SELECT 1 FROM market_symbol m WHERE m.ticker = s.symbol_id)
"""


# Stage 1 and 2 in one statement: insert the staged ticks, skip those already stored, and
# roll exactly the new ones into their 1-minute bars. Per new tick it answers the tick's
# position in the batch and, for a symbol's first new tick, the last tick stored before it
# (the one its indicator state must have seen last) and the anomaly threshold.
#
# Usually every tick is new. The statement for that case inserts them without
# `ON CONFLICT` (whose check before each insert and confirmation after it cost a third of
# the insert) and fails with a unique violation if one was already there; the batch then
# runs the statement that skips stored ticks (`all_new=False`).
#
# The previous tick is read from the bars, not searched for among the ticks (a backward
# index search per symbol was 40 % of the statement at 5,000 symbols): every 1-minute bar
# the pipeline writes keeps the time of its newest tick, and the statement's snapshot shows
# each bar as it was before this batch. If the tick's own minute has a bar whose newest
# tick is older, that is the one; if its minute has no bar yet, no tick is stored in that
# minute and the previous minute's bar has it. Anything else (a gap of more than a minute,
# a tick older than its bar's newest, a bar without a known newest tick, a symbol's first
# tick) falls back to the search.
def _store_ticks_and_bars(minute_bars: str, first_ticks: str, *, all_new: bool) -> str:
    if all_new:
        new_ticks = f"""inserted AS (
    INSERT INTO market_tick ({_TICK_COLUMNS})
    SELECT {_TICK_COLUMNS} FROM {_STAGING} ORDER BY ord
),
new_ticks AS (SELECT ord, symbol_id, ts, price, size, open, high, low, trades FROM {_STAGING})"""
        numbered = "new_ticks n"
    else:
        new_ticks = f"""new_ticks AS (
    INSERT INTO market_tick AS t ({_TICK_COLUMNS})
    SELECT {_TICK_COLUMNS} FROM {_STAGING} ORDER BY ord
    ON CONFLICT (symbol_id, ts) DO NOTHING
    RETURNING t.symbol_id, t.ts, t.price, t.size, t.open, t.high, t.low, t.trades
)"""
        numbered = f"""(SELECT s.ord, n.symbol_id, n.ts FROM new_ticks n
      JOIN {_STAGING} s ON s.symbol_id = n.symbol_id AND s.ts = n.ts) n"""
    return f"""
WITH {new_ticks},
minute_bars AS ({minute_bars}
),
upserted_bars AS (
    INSERT INTO market_bar AS b
        (symbol_id, interval, ts, open, high, low, close, volume, trades, last_tick_at)
    SELECT symbol_id, %(interval)s, ts, open, high, low, close, volume, trades, last_tick_at
    FROM minute_bars
    ON CONFLICT (symbol_id, interval, ts) DO UPDATE SET
        high = GREATEST(b.high, EXCLUDED.high),
        low = LEAST(b.low, EXCLUDED.low),
        -- ticks older than the bar's last (a late trade's, an older file's) keep its close
        close = CASE WHEN EXCLUDED.last_tick_at < b.last_tick_at THEN b.close
                     ELSE EXCLUDED.close END,
        volume = b.volume + EXCLUDED.volume,
        trades = b.trades + EXCLUDED.trades,
        last_tick_at = CASE WHEN b.last_tick_at IS NOT NULL
                            THEN GREATEST(b.last_tick_at, EXCLUDED.last_tick_at) END
    RETURNING 1
),
first_ticks AS ({first_ticks}
),
previous AS (
    SELECT f.symbol_id, f.ts,
           CASE WHEN bar.found IS NULL THEN coalesce(
                    (SELECT before.last_tick_at FROM market_bar before
                      WHERE before.symbol_id = f.symbol_id AND before.interval = %(interval)s
                        AND before.ts = {_MINUTE} - INTERVAL '1 minute'),
                    {_SEARCH_PREVIOUS})
                WHEN bar.last_tick_at < f.ts THEN bar.last_tick_at
                ELSE {_SEARCH_PREVIOUS}
           END AS prev_ts
    FROM first_ticks f
    LEFT JOIN LATERAL (  -- LIMIT: one index lookup per symbol, whatever the planner thinks
        SELECT true AS found, last_tick_at FROM market_bar
        WHERE symbol_id = f.symbol_id AND interval = %(interval)s AND ts = {_MINUTE} LIMIT 1
    ) bar ON true
)
SELECT n.ord,
       (extract(epoch FROM p.prev_ts) * 1000000)::bigint,
       sym.anomaly_threshold,
       CASE WHEN sym.extended_hours AND sym.calendar <> '' THEN sym.calendar || '+ext'
            ELSE sym.calendar END
FROM {numbered}
JOIN market_symbol sym ON sym.ticker = n.symbol_id
LEFT JOIN previous p ON p.symbol_id = n.symbol_id AND p.ts = n.ts
ORDER BY n.ord
"""


_SEARCH_PREVIOUS = """(SELECT t.ts FROM market_tick t
                      WHERE t.symbol_id = f.symbol_id AND t.ts < f.ts
                      ORDER BY t.ts DESC LIMIT 1)"""
_MINUTE_OF = "date_bin('1 minute', {}.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
_MINUTE = _MINUTE_OF.format("f")
# A conflated tick brings its slot's open, high, low and trade count; a tick of one trade
# has null there (its price is all of them).
_MINUTE_BARS = f"""
    SELECT n.symbol_id, {_MINUTE_OF.format("n")} AS ts,
           (array_agg(coalesce(n.open, n.price) ORDER BY n.ts))[1] AS open,
           max(coalesce(n.high, n.price)) AS high, min(coalesce(n.low, n.price)) AS low,
           (array_agg(n.price ORDER BY n.ts DESC))[1] AS close,
           sum(n.size) AS volume, sum(coalesce(n.trades, 1)) AS trades,
           max(n.ts) AS last_tick_at
    FROM new_ticks n
    GROUP BY 1, 2"""
_FIRST_TICKS = """
    SELECT symbol_id, min(ts) AS ts FROM new_ticks GROUP BY symbol_id"""
# A batch with one tick per bar (every simulator batch, a file of bars) needs no grouping
# into bars (its ordered aggregates cost a sort per bar: 9 ms of the statement at 5,000
# symbols; for 180,000 imported bars a sort that spilled to disk, 0.73 s of 2.6 s).
_MINUTE_BARS_OF_ONE_TICK = f"""
    SELECT n.symbol_id, {_MINUTE_OF.format("n")} AS ts, coalesce(n.open, n.price) AS open,
           coalesce(n.high, n.price) AS high, coalesce(n.low, n.price) AS low,
           n.price AS close, n.size AS volume, coalesce(n.trades, 1) AS trades,
           n.ts AS last_tick_at
    FROM new_ticks n"""
_FIRST_OF_ONE_TICK = """
    SELECT symbol_id, ts FROM new_ticks"""
# Keyed by (one tick per bar, one tick per symbol, all new); one tick per symbol implies one
# per bar.
_STORE_TICKS_AND_BARS = {
    (per_bar, per_symbol, all_new): _store_ticks_and_bars(bars, firsts, all_new=all_new)
    for per_bar, per_symbol, bars, firsts in (
        (False, False, _MINUTE_BARS, _FIRST_TICKS),
        (True, False, _MINUTE_BARS_OF_ONE_TICK, _FIRST_TICKS),
        (True, True, _MINUTE_BARS_OF_ONE_TICK, _FIRST_OF_ONE_TICK),
    )
    for all_new in (True, False)
}

_SNAPSHOT_COLUMNS = ", ".join(("symbol_id", "ts", "price", *FIELDS))
_STAGED_SNAPSHOTS = "pipeline_staged_snapshots"
_CREATE_STAGED_SNAPSHOTS = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGED_SNAPSHOTS}
(LIKE indicators_indicatorsnapshot INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
_BINARY = "FROM STDIN (FORMAT BINARY)"
_COPY_STAGING = f"COPY {_STAGING} {_BINARY}"
_COPY_SNAPSHOTS = f"COPY indicators_indicatorsnapshot ({_SNAPSHOT_COLUMNS}) {_BINARY}"
_COPY_STAGED_SNAPSHOTS = f"COPY {_STAGED_SNAPSHOTS} ({_SNAPSHOT_COLUMNS}) {_BINARY}"
_STORE_SNAPSHOTS = f"""
INSERT INTO indicators_indicatorsnapshot ({_SNAPSHOT_COLUMNS})
SELECT {_SNAPSHOT_COLUMNS} FROM {_STAGED_SNAPSHOTS}
ON CONFLICT (symbol_id, ts) DO NOTHING
"""


def _sorted_unique(batch: TickBatch) -> TickBatch:
    """Time order (stable), and the first of any (symbol, ts) that repeats in one batch."""
    first = batch.ts[0]
    if all(ts is first for ts in batch.ts) and len(set(batch.symbols)) == len(batch):
        return batch  # one slot of distinct symbols, as the simulator sends: nothing to do
    order = sorted(range(len(batch)), key=lambda i: batch.ts[i])
    seen: set[tuple[str, datetime]] = set()
    keep = []
    for i in order:
        key = (batch.symbols[i], batch.ts[i])
        if key not in seen:
            seen.add(key)
            keep.append(i)
    if keep == list(range(len(batch))):
        return batch
    idx = np.array(keep, dtype=np.int64)
    return TickBatch(
        symbols=[batch.symbols[i] for i in keep],
        ts=[batch.ts[i] for i in keep],
        prices=batch.prices[idx],
        sizes=batch.sizes[idx],
        quotes=batch.quotes.take(idx) if batch.quotes is not None else None,
        slots=batch.slots.take(idx) if batch.slots is not None else None,
    )


def _ensure_staging_tables(cursor, *, nested: bool) -> None:
    """The session's staging tables (asked every batch: a rolled-back batch drops them).

    Each commit empties them (ON COMMIT DELETE ROWS). A batch ingested inside a caller's
    transaction (`nested`) commits nothing, so it empties them itself: otherwise the next
    batch would stage its predecessors' ticks again.
    """
    statements = [_CREATE_STAGING, _CREATE_STAGED_SNAPSHOTS]
    if nested:
        statements.append(f"TRUNCATE {_STAGING}, {_STAGED_SNAPSHOTS}")
    cursor.execute(";".join(statements))


@dataclass
class _Outputs:
    """What a batch's new ticks become once the indicators have advanced over them."""

    values: dict[str, np.ndarray]
    snapshots: bytes  # the IndicatorSnapshot rows, as a binary COPY
    messages: list[dict]  # tick messages (history: each symbol's last only)
    states: dict[str, dict]  # hot state by symbol
    redis: list[Packed]  # the states any worker continues from, then the hot states
    market_message: object  # for the market group, serialized (`Publisher.prepare_batch`)
    ms: float  # time spent building these


def _outputs(
    new: _NewTicks, tick_text: list[str], thresholds: Mapping[str, float], *, live: bool
) -> _Outputs:
    """Advance the indicators over the new ticks and build everything written from them.
    History (not `live`) is never sent: its tick messages are built only for each symbol's
    last tick, which its hot state needs (a cProfile of 180,000 imported bars: 1.1 s of tick
    messages and 0.3 s of msgpack for messages nobody got)."""
    began = time.perf_counter()
    symbols, micros, prices = new.symbols, new.micros, new.prices
    opens = None if new.slots is None else new.slots.opens
    values, volumes, references = state_store.apply(symbols, micros, prices, new.sizes, opens=opens)
    snapshots = binary_copy(
        [
            ("text", symbols),
            ("timestamptz", micros),
            ("float8", prices),
            *(("bool" if name == "anomaly" else "float8", values[name]) for name in FIELDS),
        ]
    )
    latest = {symbol: i for i, symbol in enumerate(symbols)}  # a symbol's last tick wins
    rows = list(range(len(symbols))) if live else list(latest.values())
    if live:
        ticks = messages.tick_messages(
            symbols=symbols, ts=tick_text, prices=prices, sizes=new.sizes, volumes=volumes,
            references=references, quotes=new.quotes, values=values,
        )  # fmt: skip
    else:
        ticks = messages.tick_messages(
            symbols=[symbols[i] for i in rows], ts=[tick_text[i] for i in rows],
            prices=prices[rows], sizes=[new.sizes[i] for i in rows],
            volumes=[volumes[i] for i in rows], references=[references[i] for i in rows],
            quotes=None if new.quotes is None else new.quotes.take(np.array(rows)),
            values={name: column[rows] for name, column in values.items()},
        )  # fmt: skip
    tick_of = dict(zip(rows, ticks, strict=True))
    hot = [b"MSET"]
    states = {}
    meta_of = state_store.meta
    for symbol, i in latest.items():
        meta = meta_of[symbol]
        state = messages.hot_state(
            tick_of[i], session_open=meta.session_open, prev_close=meta.prev_close,
            anomaly_threshold=thresholds[symbol],
        )  # fmt: skip
        states[symbol] = state
        hot += (keys.hot(symbol).encode(), orjson.dumps(state))
    exported = [b"HSET", keys.PIPELINE_STATE.encode()]
    for symbol, blob in state_store.export(list(latest)).items():
        exported += (symbol.encode(), blob)
    return _Outputs(
        values,
        snapshots,
        ticks,
        states,
        [pack(exported), pack(hot)],
        fanout.publisher().prepare_batch(ticks) if live else None,
        (time.perf_counter() - began) * 1e3,
    )


class _Speculation:
    """A batch's outputs computed on a helper thread while PostgreSQL stores its ticks.

    The store statement is most of a batch's time and the Python work after it (indicators,
    snapshot rows, messages, hot state) needs only what the statement normally answers:
    that every tick is new and that each symbol's last stored tick and anomaly threshold
    are those of the newest state this process can find (its own or the one shared in
    Redis). The bet is checked against the statement's answer; a lost bet (a replay,
    another writer, a threshold edited in the admin, no state yet) makes the process
    forget the states it advanced, and the batch takes the careful path, which reloads
    them from Redis or rebuilds them from the database.
    """

    _pool: ThreadPoolExecutor | None = None
    _pid = 0

    def __init__(self, batch: TickBatch, *, live: bool) -> None:
        self.batch = batch
        self.live = live
        self.future: futures.Future | None = None

    def start(self, micros: list[int], tick_text: list[str]) -> None:
        """Bet (just before the store statement: a helper thread holding the GIL while the
        main thread still has round trips to make slows both)."""
        self.future = self._executor().submit(self._run, micros, tick_text)

    def _run(self, micros: list[int], tick_text: list[str]):
        batch = self.batch
        basis = state_store.basis(list(dict.fromkeys(batch.symbols)))
        if basis is None:
            return None
        thresholds = {symbol: threshold for symbol, (_, threshold, _) in basis.items()}
        new = _NewTicks(batch.symbols, batch.ts, micros, batch.prices, batch.sizes.tolist(),
                        batch.quotes, batch.slots, starts={})  # fmt: skip
        return basis, _outputs(new, tick_text, thresholds, live=self.live)

    @classmethod
    def _executor(cls) -> ThreadPoolExecutor:
        if cls._pool is None or cls._pid != os.getpid():  # a forked worker has no thread
            cls._pool = ThreadPoolExecutor(1, thread_name_prefix="marketflux-speculation")
            cls._pid = os.getpid()
        return cls._pool

    def won(self, stored: int, starts: dict[str, BatchStart]) -> _Outputs | None:
        """The outputs, if the bet holds for what the store statement answered."""
        if self.future is None or stored != len(self.batch):
            return None
        try:
            bet = self.future.result()
        except Exception:  # e.g. Redis unreachable: the careful path reports what matters
            return None
        if bet is None:
            return None
        basis, outputs = bet
        for symbol, start in starts.items():
            if (start.prev_micros, start.threshold, start.session_key) != basis[symbol]:
                return None
        self.future = None
        return outputs

    def discard(self) -> None:
        """Forget what the bet advanced (waiting for it first); nothing if it was taken."""
        if self.future is not None:
            futures.wait([self.future])
            self.future = None
            state_store.forget_symbols(self.batch.symbols)


def ingest(batch: TickBatch, *, live: bool = True) -> IngestResult:
    """Run a batch through every stage; safe to call again with the same batch.

    `live=False` is history (an import, docs/sources.md#recorded-data): ticks, bars,
    snapshots and the indicator states are stored as usual, but no alert fires, no hot
    state is written and nothing is published (`result.states` holds the hot states, for
    the caller to write where the history is the newest there is)."""
    began = time.perf_counter()
    result = _ingest(batch, live=live)
    metrics.batch_done(result.received, result.stored, result.stage_ms, live=live,
                       seconds=time.perf_counter() - began)  # fmt: skip
    return result


def _ingest(batch: TickBatch, *, live: bool) -> IngestResult:
    batch.validate()
    result = IngestResult(received=len(batch))
    if not len(batch):
        return result
    batch = _sorted_unique(batch)
    watch = _Stopwatch(result.stage_ms)
    ts_text, micros = _tick_times(batch)
    nested = connection.in_atomic_block
    speculation = _Speculation(batch, live=live)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # 1-2. Ticks and 1-minute bars, skipping what is already stored.
            rows = _store_ticks(
                cursor,
                batch=batch,
                micros=micros,
                ts_text=ts_text,
                speculation=speculation,
                nested=nested,
            )
            watch.lap("store")
            if not rows:
                return result
            new = _new_ticks(batch, micros=micros, rows=rows)
            # 3. Indicators, from a state the database vouches for (usually already done).
            outputs = _advance_indicators(
                cursor, new=new, ts_text=ts_text, speculation=speculation, result=result
            )
            watch.lap("indicators")
            # 4. One snapshot per new tick.
            _store_snapshots(cursor, snapshots=outputs.snapshots)
            watch.lap("snapshots")
            # 5. The alert rules of the batch's symbols, on each new tick.
            alerts = Evaluation()
            if live:
                alerts = _evaluate_alerts(cursor, new=new, values=outputs.values)
                result.alerts = len(alerts.events)
            watch.lap("alerts")
        watch.lap("commit")
        result.stored = len(new)
        result.messages = outputs.messages
        result.states = outputs.states
        if not live:  # the states any worker continues from; nothing else
            execute_packed(redis_client(), outputs.redis[:1])
            return result
        # 6. Hot state and the states any worker continues from, in one round trip.
        watched = _write_hot_state(outputs=outputs, after_commit=alerts.after_commit)
        watch.lap("hot_state")
        # 7. Fan-out to the channel groups.
        _publish(outputs=outputs, watched=watched, alerts=alerts.events)
        watch.lap("publish")
        metrics.published(micros[-1])  # time order: the newest tick is last
        return result
    finally:
        speculation.discard()


def _tick_times(batch: TickBatch) -> tuple[dict[datetime, str], list[int]]:
    """Each distinct tick time as message text, and each tick's time in epoch µs."""
    # Each distinct timestamp is formatted once (a simulator batch has a single one).
    ts_text: dict[datetime, str] = {}
    ts_micros: dict[datetime, int] = {}
    for ts in batch.ts:
        if ts not in ts_text:
            ts_text[ts] = messages.format_ts(ts)
            ts_micros[ts] = epoch_micros(ts)
    return ts_text, [ts_micros[ts] for ts in batch.ts]


def _store_ticks(
    cursor,
    *,
    batch: TickBatch,
    micros: list[int],
    ts_text: dict[datetime, str],
    speculation: _Speculation,
    nested: bool,
) -> list[tuple]:
    """Stages 1-2: store the new ticks and roll them into their 1-minute bars.

    Answers one row per new tick, in time order: its position in the batch and, for a
    symbol's first new tick, the tick stored before it and the anomaly threshold. The
    speculation starts just before the store statement.
    """
    _ensure_staging_tables(cursor, nested=nested)
    quotes = batch.quotes or Quotes.none(len(batch))
    slots = batch.slots or Slots.none(len(batch))
    with cursor.cursor.copy(_COPY_STAGING) as copy:
        copy.write(
            binary_copy(
                [
                    ("int4", np.arange(len(batch), dtype=np.int32)),
                    ("text", batch.symbols),
                    ("timestamptz", micros),
                    ("float8", batch.prices),
                    ("int4", batch.sizes),
                    ("float8", slots.opens),
                    ("float8", slots.highs),
                    ("float8", slots.lows),
                    ("int4", slots.trades),
                    ("float8", quotes.bids),
                    ("float8", quotes.asks),
                    ("int4", quotes.bid_sizes),
                    ("int4", quotes.ask_sizes),
                ]
            )
        )
    cursor.execute(_UNKNOWN_SYMBOLS)
    unknown = cursor.fetchone()[0]
    if unknown:
        raise BatchError(f"unknown symbols: {', '.join(sorted(unknown))}")
    speculation.start(micros, [ts_text[ts] for ts in batch.ts])
    per_symbol = len(set(batch.symbols)) == len(batch)
    per_bar = per_symbol or len(
        set(zip(batch.symbols, (m // 60_000_000 for m in micros), strict=True))
    ) == len(batch)
    params = {"interval": BAR_INTERVAL_1M}
    try:
        with transaction.atomic():
            cursor.execute(_STORE_TICKS_AND_BARS[per_bar, per_symbol, True], params)
    except IntegrityError:  # a tick already stored: a replay, or another writer
        cursor.execute(_STORE_TICKS_AND_BARS[per_bar, per_symbol, False], params)
    return cursor.fetchall()


@dataclass(frozen=True)
class _NewTicks:
    """The ticks this run added, as columns in time order (usually the whole batch)."""

    symbols: list[str]
    ts: list[datetime]
    micros: list[int]
    prices: np.ndarray
    sizes: list[int]
    quotes: Quotes | None
    slots: Slots | None
    starts: dict[str, BatchStart]  # per symbol: its first new tick, and what came before

    def __len__(self) -> int:
        return len(self.symbols)


def _new_ticks(batch: TickBatch, *, micros: list[int], rows: list[tuple]) -> _NewTicks:
    """The new ticks, from the store statement's rows."""
    if len(rows) == len(batch):  # every tick is new, the usual case: rows are in order
        symbols, tick_ts, new_micros, prices = batch.symbols, batch.ts, micros, batch.prices
        sizes, quotes, slots = batch.sizes.tolist(), batch.quotes, batch.slots
    else:
        index = [r[0] for r in rows]
        symbols = [batch.symbols[i] for i in index]
        tick_ts = [batch.ts[i] for i in index]
        new_micros = [micros[i] for i in index]
        prices = batch.prices[index]
        sizes = batch.sizes[index].tolist()
        quotes = batch.quotes.take(np.array(index)) if batch.quotes is not None else None
        slots = batch.slots.take(np.array(index)) if batch.slots is not None else None
    starts: dict[str, BatchStart] = {}
    for row, symbol, ts in zip(rows, symbols, tick_ts, strict=True):
        if symbol not in starts:  # rows are in time order: the first is the first new tick
            starts[symbol] = BatchStart(first_ts=ts, prev_micros=row[1], threshold=row[2],
                                        session_key=row[3])  # fmt: skip
    return _NewTicks(symbols, tick_ts, new_micros, prices, sizes, quotes, slots, starts)


def _advance_indicators(
    cursor,
    *,
    new: _NewTicks,
    ts_text: dict[datetime, str],
    speculation: _Speculation,
    result: IngestResult,
) -> _Outputs:
    """Stage 3: the outputs of the new ticks, from the speculation if its bet held, else
    from states made current here (noted in `result.rebuilt`)."""
    outputs = speculation.won(len(new), new.starts)
    if outputs is not None:
        result.overlapped_ms = outputs.ms
        return outputs
    speculation.discard()
    result.rebuilt = state_store.prepare(new.starts, cursor)
    thresholds = {symbol: start.threshold for symbol, start in new.starts.items()}
    tick_text = [ts_text[ts] for ts in new.ts]
    return _outputs(new, tick_text, thresholds, live=speculation.live)


def _store_snapshots(cursor, *, snapshots: bytes) -> None:
    """Stage 4: one IndicatorSnapshot row per new tick."""
    # Their ticks are new, so normally the snapshots are too and go straight in by COPY;
    # only if someone deleted ticks but not their snapshots does that conflict, and then
    # they go through staging, idempotently.
    try:
        with transaction.atomic(), cursor.cursor.copy(_COPY_SNAPSHOTS) as copy:
            copy.write(snapshots)
    except psycopg.errors.UniqueViolation:  # raised by psycopg's own COPY cursor
        with cursor.cursor.copy(_COPY_STAGED_SNAPSHOTS) as copy:
            copy.write(snapshots)
        cursor.execute(_STORE_SNAPSHOTS)


def _evaluate_alerts(cursor, *, new: _NewTicks, values: dict[str, np.ndarray]) -> Evaluation:
    """Stage 5: the alert rules of the batch's symbols, on each new tick."""
    return evaluate_alerts(
        cursor,
        redis_client(),
        symbols=new.symbols,
        micros=new.micros,
        prices=new.prices,
        values=values,
        sizes=new.sizes,
        prev_micros={symbol: start.prev_micros for symbol, start in new.starts.items()},
    )


def _write_hot_state(*, outputs: _Outputs, after_commit: list[list[bytes]]) -> set[str]:
    """Stage 6, after the commit: the hot states, the states any worker continues from and
    the alert stage's writes, in one round trip; answers the watched symbols."""
    replies = execute_packed(
        redis_client(),
        [
            *outputs.redis,
            [b"HKEYS", keys.WATCHED_SYMBOLS.encode()],
            *after_commit,
        ],
    )
    return {w.decode() for w in replies[2]}


def _publish(*, outputs: _Outputs, watched: set[str], alerts: list[dict]) -> None:
    """Stage 7: fan-out to the channel groups."""
    # The market overview, once a second, is the caller's next step:
    # `services.publish_overview_if_due(result.states)`.
    fanout.publisher().publish_batch(
        outputs.messages,
        watched=watched,
        alerts=alerts,
        prepared=outputs.market_message,
    )
