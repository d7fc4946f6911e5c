"""Reads of the gateway's WebSocket side (docs/polygon.md#websocket); the REST side reads
through `apps.market.selectors`."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from apps.market import selectors
from apps.market.models import Symbol
from apps.ops.timestamps import epoch_micros
from apps.polygon import constants as c
from apps.polygon import messages


@dataclass(frozen=True)
class Page:
    """A page of aggregates, and where the next one starts when the page stopped short of
    the range for another reason than `limit` (a page of seconds spans at most `limit`
    seconds-buckets of time): the next start (ascending) or end (descending)."""

    candles: list[selectors.Candle]
    resume: datetime | None = None


@dataclass(frozen=True)
class Span:
    """One aggregate length: `count` units of a timespan (docs/polygon.md#aggregates)."""

    timespan: str
    count: int

    def page(self, *, symbol: str, start: datetime, end: datetime, limit: int,
             newest_first: bool = False) -> Page:  # fmt: skip
        """The first `limit` buckets starting in [start, end), in the order asked for; the
        first and last are whole (`start` moves up to a bucket start)."""
        if self.timespan in c.CALENDAR_MONTHS:
            months = c.CALENDAR_MONTHS[self.timespan] * self.count
            return Page(selectors.calendar_bars_page(
                symbol=symbol, months=months, start=start, end=end, limit=limit,
                newest_first=newest_first,
            ))  # fmt: skip
        step = c.TIMESPANS[self.timespan] * self.count
        if self.timespan != "second":
            origin = c.WEEK_ORIGIN if self.timespan == "week" else selectors.BUCKET_ORIGIN
            return Page(selectors.bars_page(
                symbol=symbol, step=step, start=start, end=end, limit=limit,
                newest_first=newest_first, origin=origin,
            ))  # fmt: skip
        origin = selectors.BUCKET_ORIGIN
        start = origin - ((origin - start) // step) * step  # up to bucket boundaries
        end = origin - ((origin - end) // step) * step
        resume = None
        if newest_first and end - start > step * limit:
            start = resume = end - step * limit
        elif not newest_first and end - start > step * limit:
            end = resume = start + step * limit
        if start >= end:
            return Page([])
        candles = selectors.tick_buckets(symbol=symbol, step=step, start=start, end=end,
                                         newest_first=newest_first)  # fmt: skip
        return Page(candles, resume)


class Venues:
    """Each symbol's vendor exchange id and tape (`constants.EXCHANGES`), per process: read
    once, and again when a ticker is missing, at most once every VENUES_TTL seconds. The
    last trade and every `T` event need them; a query each was half of `/v2/last/trade`'s
    time (docs/benchmarks.md#polygon)."""

    def __init__(self) -> None:
        self.by_ticker: dict[str, tuple[int, int]] = {}
        self.loaded_at = float("-inf")

    def stale_for(self, tickers: Iterable[str]) -> bool:
        missing = any(t not in self.by_ticker for t in tickers)
        return missing and time.monotonic() - self.loaded_at > c.VENUES_TTL

    def reload(self) -> None:
        self.loaded_at = time.monotonic()
        self.by_ticker = {  # one new dict, swapped in whole: safe for other threads
            ticker: messages.exchange_of(exchange)[:2]
            for ticker, exchange in Symbol.objects.values_list("ticker", "exchange")
        }

    def of(self, ticker: str) -> tuple[int, int]:
        """A known ticker's venue (after `stale_for`/`reload`); other exchanges' for others."""
        return self.by_ticker.get(ticker, c.OTHER_EXCHANGE[:2])

    def current(self, ticker: str) -> tuple[int, int]:
        """`of`, reloading first if the ticker is missing (sync callers)."""
        if self.stale_for([ticker]):
            self.reload()
        return self.of(ticker)


venues = Venues()


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
