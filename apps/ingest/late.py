"""Late trades (docs/sources.md#late-trades): trades a live feed delivers after their slot's
tick was stored. They still reach their tick and its 1-minute bar, which take in their size,
their count and their high and low; the tick's price, the bar's open and close, and the
indicators computed on the tick stay as they were. A late trade of a slot that has no tick
becomes a tick of its own, stored as history (no alert, no fan-out).

One statement folds a whole batch: the ticks updated and, from exactly the rows it changed,
the bars; a batch folded twice would count twice, so callers fold each trade once (the live
conflator remembers the trade ids it has counted). The fold and the new ticks are one
transaction, so a fold that fails part way (and is tried again) has counted nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connection, transaction

from apps.ingest.pipeline import TickBatch, ingest
from apps.market.backfill import refresh_aggregates
from apps.market.rollup import SETTLE

_FOLD = """
WITH late AS (
    SELECT * FROM unnest(%(symbols)s::varchar[], %(ts)s::timestamptz[], %(sizes)s::bigint[],
                         %(highs)s::float8[], %(lows)s::float8[], %(trades)s::int[])
        AS l(symbol_id, ts, size, high, low, trades)
),
folded AS (
    UPDATE market_tick t SET
        size = t.size + l.size,
        open = coalesce(t.open, t.price),
        high = greatest(coalesce(t.high, t.price), l.high),
        low = least(coalesce(t.low, t.price), l.low),
        trades = coalesce(t.trades, 1) + l.trades
    FROM late l
    WHERE t.symbol_id = l.symbol_id AND t.ts = l.ts
    RETURNING t.symbol_id, t.ts, l.size, l.high, l.low, l.trades
),
bars AS (
    SELECT symbol_id, date_bin('1 minute', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS ts,
           sum(size) AS size, max(high) AS high, min(low) AS low, sum(trades) AS trades
    FROM folded GROUP BY 1, 2
),
updated AS (
    UPDATE market_bar b SET
        volume = b.volume + bars.size, trades = b.trades + bars.trades,
        high = greatest(b.high, bars.high), low = least(b.low, bars.low)
    FROM bars
    WHERE b.symbol_id = bars.symbol_id AND b.interval = '1m' AND b.ts = bars.ts
    RETURNING 1
)
SELECT symbol_id, ts FROM folded
"""


@dataclass
class Folded:
    """What `fold` did with a batch of late trades."""

    folded: int = 0  # slots whose stored tick took them in
    new_ticks: int = 0  # slots without a tick, stored as ticks of their own


def fold(batch: TickBatch) -> Folded:
    """Fold each row of `batch` (one slot's late trades, conflated: `price` their last,
    `size` their sum, `slots` their first, high, low and count, or none for one trade) into
    the stored tick of its symbol and slot start, or store it as history where there is none.
    """
    batch.validate()
    if not len(batch):
        return Folded()
    prices = np.asarray(batch.prices, dtype=np.float64)
    if batch.slots is None:
        highs = lows = prices
        counts = np.ones(len(batch))
    else:
        one = np.isnan(batch.slots.trades)
        highs = np.where(one, prices, batch.slots.highs)
        lows = np.where(one, prices, batch.slots.lows)
        counts = np.where(one, 1.0, batch.slots.trades)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _FOLD,
            {
                "symbols": list(batch.symbols), "ts": list(batch.ts),
                "sizes": [int(s) for s in batch.sizes], "highs": highs.tolist(),
                "lows": lows.tolist(), "trades": [int(c) for c in counts],
            },
        )  # fmt: skip
        done = {(symbol, ts) for symbol, ts in cursor.fetchall()}
        rest = np.array(
            [i for i, key in enumerate(zip(batch.symbols, batch.ts, strict=True))
             if key not in done],
            dtype=np.int64,
        )  # fmt: skip
        result = Folded(folded=len(done))
        if len(rest):
            # Its bar keeps its close: the tick is older than the bar's last (the upsert).
            result.new_ticks = ingest(_take(batch, rest), live=False).stored
    oldest = min(batch.ts)
    if oldest < datetime.now(UTC) - SETTLE:  # the longer bars may have been rolled up already
        refresh_aggregates(start=oldest, end=max(batch.ts) + timedelta(minutes=1),
                           tickers=sorted(set(batch.symbols)))  # fmt: skip
    return result


def _take(batch: TickBatch, rows: np.ndarray) -> TickBatch:
    return TickBatch(
        symbols=[batch.symbols[i] for i in rows], ts=[batch.ts[i] for i in rows],
        prices=np.asarray(batch.prices)[rows], sizes=np.asarray(batch.sizes)[rows],
        quotes=None if batch.quotes is None else batch.quotes.take(rows),
        slots=None if batch.slots is None else batch.slots.take(rows),
    )  # fmt: skip
