"""The ingest pipeline (DESIGN.md §3): every tick source hands its batches to `ingest`.

Each stage is a step of `ingest`. The database stages run in one transaction, so a batch
is stored whole or not at all, and every write is idempotent on its key: replaying a batch
(Celery redelivers with acks_late after a crash) stores nothing twice and reports no tick
as new, so later stages see only what this run actually added.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db import connection, transaction

from apps.market.constants import BAR_INTERVAL_1M


class BatchError(ValueError):
    """A batch that cannot be ingested as given (the message says which row and why)."""


@dataclass(frozen=True)
class TickBatch:
    """Ticks from one source run, as columns."""

    symbols: list[str]
    ts: list[datetime]
    prices: np.ndarray
    sizes: np.ndarray

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, datetime, float, int]]) -> TickBatch:
        return cls(
            symbols=[r[0] for r in rows],
            ts=[r[1] for r in rows],
            prices=np.array([r[2] for r in rows], dtype=np.float64),
            sizes=np.array([r[3] for r in rows], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.symbols)

    def validate(self) -> None:
        n = len(self.symbols)
        if not (len(self.ts) == len(self.prices) == len(self.sizes) == n):
            raise BatchError("symbols, ts, prices and sizes must have the same length")
        for i in range(n):
            ts = self.ts[i]
            if ts.tzinfo is None or ts.utcoffset() is None:
                raise BatchError(f"row {i} ({self.symbols[i]}): ts must be timezone-aware")
        bad_price = ~(np.isfinite(self.prices) & (self.prices > 0))
        if bad_price.any():
            i = int(np.argmax(bad_price))
            raise BatchError(f"row {i} ({self.symbols[i]}): price must be a positive number")
        bad_size = self.sizes <= 0
        if bad_size.any():
            i = int(np.argmax(bad_size))
            raise BatchError(f"row {i} ({self.symbols[i]}): size must be a positive integer")


@dataclass
class IngestResult:
    """What one `ingest` call did: the ticks it added (in time order) and its timings."""

    received: int
    symbols: list[str] = field(default_factory=list)
    ts: list[datetime] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return len(self.symbols)


# Stage 1 and 2 in one statement (one round trip): insert the ticks, skip those already
# stored, and roll exactly the new ones into their 1-minute bars. `ord` keeps the input
# order so open and close are the first and last new tick of the minute.
_STORE_TICKS_AND_BARS = """
WITH incoming AS (
    SELECT s AS symbol_id, t AS ts, p AS price, z AS size, o AS ord
    FROM unnest(%(symbols)s::varchar[], %(ts)s::timestamptz[], %(prices)s::float8[],
                %(sizes)s::int[]) WITH ORDINALITY AS u(s, t, p, z, o)
),
new_ticks AS (
    INSERT INTO market_tick (symbol_id, ts, price, size)
    SELECT symbol_id, ts, price, size FROM incoming ORDER BY ord
    ON CONFLICT (symbol_id, ts) DO NOTHING
    RETURNING symbol_id, ts, price, size
),
minute_bars AS (
    SELECT n.symbol_id,
           date_bin('1 minute', n.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS ts,
           (array_agg(n.price ORDER BY n.ts))[1] AS open,
           max(n.price) AS high,
           min(n.price) AS low,
           (array_agg(n.price ORDER BY n.ts DESC))[1] AS close,
           sum(n.size) AS volume,
           count(*) AS trades
    FROM new_ticks n
    GROUP BY 1, 2
),
upserted_bars AS (
    INSERT INTO market_bar AS b (symbol_id, interval, ts, open, high, low, close, volume, trades)
    SELECT symbol_id, %(interval)s, ts, open, high, low, close, volume, trades FROM minute_bars
    ON CONFLICT (symbol_id, interval, ts) DO UPDATE SET
        high = GREATEST(b.high, EXCLUDED.high),
        low = LEAST(b.low, EXCLUDED.low),
        close = EXCLUDED.close,
        volume = b.volume + EXCLUDED.volume,
        trades = b.trades + EXCLUDED.trades
    RETURNING 1
)
SELECT n.symbol_id, n.ts, n.price, n.size FROM new_ticks n ORDER BY n.ts, n.symbol_id
"""


def _sorted_unique(batch: TickBatch) -> TickBatch:
    """Time order (stable), and the first of any (symbol, ts) that repeats in one batch."""
    order = sorted(range(len(batch)), key=lambda i: batch.ts[i])
    seen: set[tuple[str, datetime]] = set()
    keep = []
    for i in order:
        key = (batch.symbols[i], batch.ts[i])
        if key not in seen:
            seen.add(key)
            keep.append(i)
    if len(keep) == len(batch) and keep == list(range(len(batch))):
        return batch
    idx = np.array(keep, dtype=np.int64)
    return TickBatch(
        symbols=[batch.symbols[i] for i in keep],
        ts=[batch.ts[i] for i in keep],
        prices=batch.prices[idx],
        sizes=batch.sizes[idx],
    )


def ingest(batch: TickBatch) -> IngestResult:
    """Run a batch through every stage; safe to call again with the same batch."""
    batch.validate()
    result = IngestResult(received=len(batch))
    if not len(batch):
        return result
    batch = _sorted_unique(batch)

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _STORE_TICKS_AND_BARS,
            {
                "symbols": batch.symbols,
                "ts": batch.ts,
                "prices": batch.prices.tolist(),
                "sizes": batch.sizes.tolist(),
                "interval": BAR_INTERVAL_1M,
            },
        )
        rows = cursor.fetchall()
    result.stage_ms["store"] = (time.perf_counter() - started) * 1000.0

    for symbol, ts, price, size in rows:
        result.symbols.append(symbol)
        result.ts.append(ts)
        result.prices.append(price)
        result.sizes.append(size)
    return result
