"""Reads of the gateway's WebSocket side (docs/polygon.md#websocket); the REST side reads
through `apps.market.selectors`."""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from apps.market.models import Symbol
from apps.ops.timestamps import epoch_micros
from apps.polygon import messages


def exchanges_by_ticker() -> dict[str, tuple[int, int]]:
    """Every symbol's vendor exchange id and tape (`constants.EXCHANGES`)."""
    return {
        ticker: messages.exchange_of(exchange)[:2]
        for ticker, exchange in Symbol.objects.values_list("ticker", "exchange")
    }


def known_tickers(*, tickers: set[str]) -> set[str]:
    return set(Symbol.objects.filter(ticker__in=tickers).values_list("ticker", flat=True))


def minute_bars_between(
    *, spans: list[tuple[str, datetime, datetime]]
) -> list[tuple[str, int, float, float, float, float, int, int]]:
    """The stored 1-minute bars of each `(symbol, since, until)` span, both ends included,
    in one query: `(symbol, start µs, o, h, l, c, v, trades)` by symbol, then time."""
    if not spans:
        return []
    symbols, since, until = (list(column) for column in zip(*spans, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT b.symbol_id, b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades
            FROM unnest(%s::varchar[], %s::timestamptz[], %s::timestamptz[])
                 AS k(symbol, since, until)
            JOIN market_bar b ON b.symbol_id = k.symbol AND b.interval = '1m'
                 AND b.ts >= k.since AND b.ts <= k.until
            ORDER BY b.symbol_id, b.ts
            """,
            [symbols, since, until],
        )
        return [(row[0], epoch_micros(row[1]), *row[2:]) for row in cursor.fetchall()]
