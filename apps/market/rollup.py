"""Longer bars on plain PostgreSQL: closed buckets rolled up from 1-minute bars, once.

On TimescaleDB, 5m to 1d bars are continuous aggregates. Without it, `date_bin` over the
1-minute bars at read time aggregated every minute of the range on every request: 500
hourly candles read 30,000 rows, a year of daily ones 525,000 (340 ms). This does what a
continuous aggregate does, in plain SQL: a periodic task writes each bucket once it has
closed into `market_bar` under its own interval (`date_bin` over the 1-minute bars, as
before), and reads take the stored buckets and aggregate only the minutes after the last
one (`selectors.bars_for_range`), so the still-open bucket is always current.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection

from apps.market import keys, timescale
from apps.market.constants import BAR_INTERVAL_1M, BAR_INTERVALS
from apps.ops.redis_client import redis_client
from apps.ops.timestamps import BUCKET_ORIGIN, floor_to

ROLLUP_INTERVALS = [name for name in BAR_INTERVALS if name != BAR_INTERVAL_1M]
# A bucket is rolled up only this long after it closed: a retried tick may still land in
# its last minute (ticks are retried for at most 20 intervals, 10 s at the default).
SETTLE = timedelta(seconds=30)

# Per symbol, one index range scan of its 1-minute bars; no scan of the whole table.
_ROLLUP = """
INSERT INTO market_bar AS b (symbol_id, interval, ts, open, high, low, close, volume, trades)
SELECT s.ticker, %(interval)s, r.bucket, r.open, r.high, r.low, r.close, r.volume, r.trades
FROM market_symbol s
CROSS JOIN LATERAL (
    SELECT date_bin(%(step)s, m.ts, %(origin)s) AS bucket,
           (array_agg(m.open ORDER BY m.ts))[1] AS open, max(m.high) AS high,
           min(m.low) AS low, (array_agg(m.close ORDER BY m.ts DESC))[1] AS close,
           sum(m.volume) AS volume, sum(m.trades) AS trades
    FROM market_bar m
    WHERE m.symbol_id = s.ticker AND m.interval = '1m' AND m.ts >= %(start)s AND m.ts < %(end)s
    GROUP BY 1
) AS r
WHERE %(tickers)s::varchar[] IS NULL OR s.ticker = ANY(%(tickers)s::varchar[])
ON CONFLICT (symbol_id, interval, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades
"""

# Where rolling up starts when Redis has no watermark: after the newest stored bucket of
# any symbol, or at the oldest 1-minute bar when nothing was rolled up yet.
_RESUME_FROM = """
SELECT coalesce(
    (SELECT max(last.ts) FROM market_symbol s CROSS JOIN LATERAL (
        SELECT b.ts + %(step)s AS ts FROM market_bar b
        WHERE b.symbol_id = s.ticker AND b.interval = %(interval)s ORDER BY b.ts DESC LIMIT 1
    ) AS last),
    (SELECT min(first.ts) FROM market_symbol s CROSS JOIN LATERAL (
        SELECT b.ts FROM market_bar b
        WHERE b.symbol_id = s.ticker AND b.interval = '1m' ORDER BY b.ts LIMIT 1
    ) AS first)
)
"""


def rollup_range(
    *, interval: str, start: datetime, end: datetime, tickers: list[str] | None = None
) -> int:
    """(Re)write the `interval` buckets that start in [start, end) from their 1-minute bars.

    Idempotent: a bucket written again is recomputed from all its minutes (a backfill that
    adds older minutes to a stored bucket is folded in). Returns the buckets written.
    """
    step = BAR_INTERVALS[interval]
    start, end = floor_to(start, step), floor_to(end, step)
    if start >= end:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _ROLLUP,
            {
                "interval": interval, "step": step, "origin": BUCKET_ORIGIN,
                "start": start, "end": end, "tickers": tickers,
            },
        )  # fmt: skip
        return cursor.rowcount


def rollup_closed_buckets(now: datetime | None = None) -> dict[str, int]:
    """Write every bucket that closed since the last run; the periodic task's work."""
    if timescale.installed(connection):
        return {}  # continuous aggregates do this
    now = now or datetime.now(UTC)
    client = redis_client()
    written = {}
    for interval in ROLLUP_INTERVALS:
        step = BAR_INTERVALS[interval]
        end = floor_to(now - SETTLE, step)
        mark = client.get(keys.rollup_watermark(interval))
        if mark is not None:
            start = datetime.fromtimestamp(float(mark), tz=UTC)
        else:
            with connection.cursor() as cursor:
                cursor.execute(_RESUME_FROM, {"interval": interval, "step": step})
                start = cursor.fetchone()[0] or end
        written[interval] = rollup_range(interval=interval, start=start, end=end)
        if end > start:
            client.set(keys.rollup_watermark(interval), end.timestamp())
    return written
