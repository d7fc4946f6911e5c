"""Reads of market data."""

from __future__ import annotations

import zlib
from datetime import datetime

from django.db import connection

from apps.market.models import Symbol


def shard_of(ticker: str, shards: int) -> int:
    """Stable shard of a ticker (the same in every process, unlike hash())."""
    return zlib.crc32(ticker.encode()) % shards


def active_symbols_for_shard(*, shard: int, shards: int) -> list[Symbol]:
    symbols = Symbol.objects.filter(active=True).order_by("ticker")
    return [s for s in symbols if shard_of(s.ticker, shards) == shard]


# One index probe per symbol (backward scan of the (symbol, ts) key), never a table scan.
_LAST_PRICES_BEFORE = """
SELECT s.ticker, last.price
FROM unnest(%(tickers)s::varchar[]) AS s(ticker)
CROSS JOIN LATERAL (
    SELECT t.price FROM market_tick t
    WHERE t.symbol_id = s.ticker AND t.ts < %(before)s
    ORDER BY t.ts DESC LIMIT 1
) AS last
"""


def last_prices_before(*, tickers: list[str], before: datetime) -> dict[str, float]:
    """The last stored price of each ticker strictly before `before` (absent if none)."""
    if not tickers:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_LAST_PRICES_BEFORE, {"tickers": tickers, "before": before})
        return dict(cursor.fetchall())


_SYMBOLS_WITH_LAST_TICK = """
SELECT s.ticker, s.name, s.exchange, s.sector, s.active, last.price, last.ts
FROM market_symbol s
LEFT JOIN LATERAL (
    SELECT t.price, t.ts FROM market_tick t
    WHERE t.symbol_id = s.ticker ORDER BY t.ts DESC LIMIT 1
) AS last ON true
ORDER BY s.ticker
"""


def symbols_with_last_tick() -> list[dict]:
    """Every symbol with its last stored price and time (None when it has no tick yet)."""
    with connection.cursor() as cursor:
        cursor.execute(_SYMBOLS_WITH_LAST_TICK)
        columns = [c.name for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
