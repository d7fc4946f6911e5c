"""Reads of market data."""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import orjson
import psycopg
from django.db import connection
from psycopg.pq import Format

from apps.market import keys, messages, sessions, timescale
from apps.market.constants import BAR_INTERVAL_1M, BAR_INTERVALS
from apps.market.models import Bar, Symbol, Tick
from apps.ops.redis_client import redis_client
from apps.ops.timestamps import BUCKET_ORIGIN, UNIX_EPOCH, epoch_micros, floor_to


def shard_of(ticker: str, shards: int) -> int:
    """Stable shard of a ticker (the same in every process, unlike hash())."""
    return zlib.crc32(ticker.encode()) % shards


def active_symbols_for_shard(*, shard: int, shards: int) -> list[Symbol]:
    """The active symbols the simulator ticks in this shard (its own source's only)."""
    symbols = Symbol.objects.filter(active=True, source__isnull=True).order_by("ticker")
    return [s for s in symbols if shard_of(s.ticker, shards) == shard]


def hot_states(tickers: list[str]) -> dict[str, dict | None]:
    """The hot state the pipeline last wrote for each ticker (None before its first tick).

    One MGET for any number of tickers: "latest" answers never scan the database.
    """
    if not tickers:
        return {}
    blobs = redis_client().mget([keys.hot(t) for t in tickers])
    return {t: orjson.loads(b) if b else None for t, b in zip(tickers, blobs, strict=True)}


def active_tickers() -> list[str]:
    return list(Symbol.objects.filter(active=True).values_list("ticker", flat=True))


def market_overview(known: dict[str, dict] | None = None, tickers: list[str] | None = None) -> dict:
    """The overview of every active symbol (REST, WebSocket, the pipeline's broadcast).

    `known`: hot states the caller holds already (the batch the pipeline just wrote); only
    the other active symbols are read from Redis. `tickers`: the active symbols, if the
    caller read them already.
    """
    known = known or {}
    if tickers is None:
        tickers = active_tickers()
    states = hot_states([t for t in tickers if t not in known])
    states.update((t, known[t]) for t in tickers if t in known)
    return messages.overview(states, now=datetime.now(UTC))


def recent_ticks(symbol: str, limit: int, *, until: datetime | None = None) -> list[tuple]:
    """The last `limit` ticks (at or before `until`) as (ts, price, size, bid, ask,
    bid_size, ask_size), oldest first.

    A backward scan of the (symbol, ts) key.
    """
    ticks = Tick.objects.filter(symbol_id=symbol)
    if until is not None:
        ticks = ticks.filter(ts__lte=until)
    rows = ticks.order_by("-ts").values_list(
        "ts", "price", "size", "bid", "ask", "bid_size", "ask_size"
    )[:limit]
    return list(reversed(rows))


QUOTE_LOOKBACK = 1000  # ticks searched back for the newest that carried a quote


def last_quote(symbol: str) -> tuple | None:
    """The newest quote as (ts, bid, ask, bid_size, ask_size), or None: the newest tick
    that carried one among the last QUOTE_LOOKBACK ticks (a bounded backward scan of the
    (symbol, ts) key, however many ticks came from a source without quotes)."""
    with connection.cursor() as cursor:
        cursor.execute(_LAST_QUOTE, [symbol, QUOTE_LOOKBACK])
        return cursor.fetchone()


_LAST_QUOTE = """
SELECT ts, bid, ask, bid_size, ask_size FROM (
    SELECT ts, bid, ask, bid_size, ask_size FROM market_tick
    WHERE symbol_id = %s ORDER BY ts DESC LIMIT %s
) newest WHERE bid IS NOT NULL ORDER BY ts DESC LIMIT 1
"""


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


@dataclass(frozen=True)
class Candle:
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades: int


# Longer bars on plain PostgreSQL: the buckets `rollup` stored, then `date_bin` over the
# 1-minute bars after the last stored one (the still-open bucket, or whatever the periodic
# roll-up has not reached yet). Buckets are aligned on 2000-01-01 00:00 UTC, so 1d buckets
# start at midnight UTC and 1h buckets on the hour.
_BARS_ROLLED_UP = """
WITH mark AS (
    SELECT coalesce(
        (SELECT b.ts + %(step)s FROM market_bar b
         WHERE b.symbol_id = %(symbol)s AND b.interval = %(interval)s
         ORDER BY b.ts DESC LIMIT 1),
        '-infinity'::timestamptz) AS upto
)
(SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades
 FROM market_bar b, mark
 WHERE b.symbol_id = %(symbol)s AND b.interval = %(interval)s
   AND b.ts >= %(start)s AND b.ts < least(%(end)s, mark.upto)
 ORDER BY b.ts DESC LIMIT %(limit)s)
UNION ALL
(SELECT date_bin(%(step)s, m.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
        (array_agg(m.open ORDER BY m.ts))[1], max(m.high), min(m.low),
        (array_agg(m.close ORDER BY m.ts DESC))[1], sum(m.volume)::bigint, sum(m.trades)::int
 FROM market_bar m, mark
 WHERE m.symbol_id = %(symbol)s AND m.interval = '1m'
   AND m.ts >= greatest(%(start)s, mark.upto) AND m.ts < %(end)s
 GROUP BY 1)
ORDER BY 1 DESC LIMIT %(limit)s
"""

_BARS_FROM_TABLE = """
SELECT ts, open, high, low, close, volume, trades FROM {table}
WHERE symbol_id = %(symbol)s {interval_filter} AND ts >= %(start)s AND ts < %(end)s
ORDER BY ts DESC LIMIT %(limit)s
"""


# psycopg's own timestamptz loader (its C one with psycopg[binary]). Django registers a Python
# subclass of it on every connection, to set each value's tzinfo to Django's time zone; for
# 500 candles that was 3 of the 4 ms spent reading the rows (docs/operations.md#per-request-cost).
# Django sets the session's TimeZone to that same zone, so psycopg's loader returns the same
# aware datetimes: UTC, as `datetime.timezone.utc`.
_TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(
    psycopg.postgres.types["timestamptz"].oid, Format.TEXT
)


def floor_to_interval(ts: datetime, interval: str) -> datetime:
    return floor_to(ts, BAR_INTERVALS[interval])


def bars_for_range(
    *,
    symbol: str,
    interval: str,
    limit: int,
    start: datetime | None = None,
    end: datetime | None = None,
    clock: sessions.Clock | None = None,
) -> list[Candle]:
    """The newest `limit` candles starting in [start, end), oldest first, the open one included.

    Without `start`, the window reaches back just far enough for `limit` buckets, so a
    query over a year of history reads only what it returns. Daily bars of a symbol with an
    exchange calendar are its sessions' (`session_days`); `clock` saves looking it up.
    """
    step = BAR_INTERVALS[interval]
    end = end or datetime.now(UTC) + step
    if interval == "1d" and (clock := _clock(symbol, clock)).key:
        if start is None:  # the newest `limit` sessions: enough dates for them, trimmed
            start = end - step * (2 * limit + 10)
        return session_days(symbol=symbol, clock=clock, start=start, end=end)[-limit:]
    if start is None:
        start = floor_to_interval(end - step * (limit + 1), interval)
    elif floor_to_interval(start, interval) != start:
        start = floor_to_interval(start, interval) + step  # only whole buckets from start on
    params = {
        "symbol": symbol, "interval": interval, "start": start, "end": end, "limit": limit,
        "step": step,
    }  # fmt: skip
    view = timescale.aggregate_view(interval)
    if interval == BAR_INTERVAL_1M:
        sql = _BARS_FROM_TABLE.format(table="market_bar", interval_filter="AND interval = '1m'")
    elif view and timescale.installed(connection):
        sql = _BARS_FROM_TABLE.format(table=view, interval_filter="")
    else:
        sql = _BARS_ROLLED_UP
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", _TIMESTAMPTZ_LOADER)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [Candle(*row) for row in reversed(rows)]


def _clock(symbol: str, clock: sessions.Clock | None) -> sessions.Clock:
    return clock if clock is not None else sessions.clocks_of([symbol])[symbol]


# The stored intervals a session's bounds are cut from, longest first: exchanges open and
# close on a quarter hour or a minute, and local midnight is on the hour in most zones.
_SESSION_PARTS = ["1h", "15m", "5m", "1m"]


def session_days(
    *, symbol: str, clock: sessions.Clock, start: datetime, end: datetime
) -> list[Candle]:
    """The daily bars of a symbol with an exchange calendar (docs/contracts.md#sessions):
    one per session dated in [start, end) that has trades, labelled by its local midnight,
    oldest first.

    Each is summed from the stored bars of the longest interval whose buckets fall wholly
    inside or outside every session (an hour, or 15 minutes for a 9:30 open): exact, and
    about 26 rows a regular NYSE session (a year of daily bars: 6,600 rows, not the 98,000
    of its minutes). Trades outside every session are in no daily bar.
    """
    days = clock.sessions_dated(epoch_micros(start), epoch_micros(end))
    if not days:
        return []
    windows = [clock.window(day) for day in days]
    bounds = [us for window in windows for us in window]
    part = next(
        name for name in _SESSION_PARTS
        if all(us % (BAR_INTERVALS[name] // timedelta(microseconds=1)) == 0 for us in bounds)
    )  # fmt: skip
    first, last = windows[0][0], windows[-1][1]
    step_us = BAR_INTERVALS[part] // timedelta(microseconds=1)
    parts = bars_for_range(
        symbol=symbol, interval=part, limit=(last - first) // step_us + 1, clock=clock,
        start=UNIX_EPOCH + timedelta(microseconds=first),
        end=UNIX_EPOCH + timedelta(microseconds=last),
    )  # fmt: skip
    starts = [window[0] for window in windows]
    grouped: dict[int, list[Candle]] = {}
    for candle in parts:
        us = epoch_micros(candle.ts)
        i = bisect.bisect_right(starts, us) - 1
        if i >= 0 and us < windows[i][1]:
            grouped.setdefault(i, []).append(candle)
    return [
        Candle(
            clock.label(days[i]), bars[0].open, max(b.high for b in bars),
            min(b.low for b in bars), bars[-1].close, sum(b.volume for b in bars),
            sum(b.trades for b in bars),
        )
        for i, bars in sorted(grouped.items())
    ]  # fmt: skip


@dataclass(frozen=True)
class BackfillProgress:
    """A backfill job as `services.backfill_job_run` records it."""

    job: str
    state: str  # queued, running, done or failed
    tickers: list[str]
    days: int
    done: int  # bars simulated so far (written, or found stored already)
    total: int  # bars to simulate (0 until planned, or when the history is there)
    rows: int  # bars written, once done
    error: str

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        return self.done * 100 // self.total if self.total else 0


def backfill_job_progress(*, job: str) -> BackfillProgress | None:
    """The job's progress; None for an unknown (or expired) job."""
    raw = redis_client().hgetall(keys.backfill_job(job))
    if not raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return BackfillProgress(
        job=job,
        state=fields.get("state", "queued"),
        tickers=[t for t in fields.get("tickers", "").split(",") if t],
        days=int(fields.get("days", 0)),
        done=int(fields.get("done", 0)),
        total=int(fields.get("total", 0)),
        rows=int(fields.get("rows", 0)),
        error=fields.get("error", ""),
    )


# Pages of buckets of any length, oldest or newest first, for doors that page through a
# range (the Polygon-compatible aggregates, docs/polygon.md#aggregates). Stored intervals
# read what `bars_for_range` reads; any other length is a `date_bin` over the 1-minute bars
# from `origin` (2000-01-01 00:00 UTC unless the caller says otherwise).
_BUCKETS_FROM_MINUTES = """
SELECT date_bin(%(step)s, m.ts, %(origin)s),
       (array_agg(m.open ORDER BY m.ts))[1], max(m.high), min(m.low),
       (array_agg(m.close ORDER BY m.ts DESC))[1], sum(m.volume)::bigint, sum(m.trades)::int
FROM market_bar m
WHERE m.symbol_id = %(symbol)s AND m.interval = '1m' AND m.ts >= %(start)s AND m.ts < %(end)s
GROUP BY 1 ORDER BY 1 {direction} LIMIT %(limit)s
"""


def bars_page(
    *,
    symbol: str,
    step: timedelta,
    start: datetime,
    end: datetime,
    limit: int,
    newest_first: bool = False,
    origin: datetime = BUCKET_ORIGIN,
    clock: sessions.Clock | None = None,
) -> list[Candle]:
    """The first `limit` buckets of `step` starting in [start, end), in the order asked for.

    `start` is moved up to a bucket boundary, so every bucket is whole from its start on
    (as `bars_for_range` does), and so is the last one. The still-open bucket is included.
    Days of a symbol with an exchange calendar are its sessions (`session_days`).
    """
    if step == BAR_INTERVALS["1d"] and origin == BUCKET_ORIGIN:
        if (clock := _clock(symbol, clock)).key:
            days = session_days(symbol=symbol, clock=clock, start=start, end=end)
            return (days[::-1] if newest_first else days)[:limit]
    aligned = origin + ((start - origin) // step) * step
    if aligned != start:
        start = aligned + step
    # The last bucket whole too: `end` moved up to a boundary adds no bucket start, and
    # takes in every minute of a bucket that starts before `end` and ends after it.
    end = origin - ((origin - end) // step) * step
    direction = "DESC" if newest_first else "ASC"
    params = {
        "symbol": symbol, "start": start, "end": end, "limit": limit, "step": step,
        "origin": origin,
    }  # fmt: skip
    interval = next((name for name, length in BAR_INTERVALS.items() if length == step), None)
    if interval is None or origin != BUCKET_ORIGIN:
        sql = _BUCKETS_FROM_MINUTES.format(direction=direction)
    elif interval == BAR_INTERVAL_1M:
        sql = _BARS_FROM_TABLE.format(table="market_bar", interval_filter="AND interval = '1m'")
    elif (view := timescale.aggregate_view(interval)) and timescale.installed(connection):
        sql = _BARS_FROM_TABLE.format(table=view, interval_filter="")
    else:
        sql = _BARS_ROLLED_UP
        params["interval"] = interval
    if interval is not None and origin == BUCKET_ORIGIN:
        # The stored-bar queries page newest first; only their outer orders change here.
        sql = sql.replace("DESC LIMIT %(limit)s", f"{direction} LIMIT %(limit)s")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [Candle(*row) for row in cursor.fetchall()]


_BUCKETS_FROM_TICKS = """
SELECT date_bin(%(step)s, t.ts, %(origin)s),
       (array_agg(coalesce(t.open, t.price) ORDER BY t.ts))[1], max(coalesce(t.high, t.price)),
       min(coalesce(t.low, t.price)), (array_agg(t.price ORDER BY t.ts DESC))[1],
       sum(t.size)::bigint, sum(coalesce(t.trades, 1))::int
FROM market_tick t
WHERE t.symbol_id = %(symbol)s AND t.ts >= %(start)s AND t.ts < %(end)s
GROUP BY 1 ORDER BY 1 {direction}
"""


def tick_buckets(*, symbol: str, step: timedelta, start: datetime, end: datetime,
                 newest_first: bool = False) -> list[Candle]:  # fmt: skip
    """Buckets of `step` (seconds, where no bar is stored) summed from the ticks of
    [start, end), both bucket boundaries: every tick in that time is read, so callers
    bound the window (docs/polygon.md#aggregates pages a window of `limit` buckets)."""
    sql = _BUCKETS_FROM_TICKS.format(direction="DESC" if newest_first else "ASC")
    params = {"symbol": symbol, "step": step, "origin": BUCKET_ORIGIN, "start": start,
              "end": end}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [Candle(*row) for row in cursor.fetchall()]


def month_index(ts: datetime, tz: tzinfo = UTC) -> int:
    """Calendar months (in `tz`) from January 2000 to the month `ts` falls in."""
    ts = ts.astimezone(tz)
    return (ts.year - 2000) * 12 + ts.month - 1


def month_start(index: int) -> datetime:
    """The first instant of the month `month_index` numbers."""
    return datetime(2000 + index // 12, index % 12 + 1, 1, tzinfo=UTC)


def calendar_bars_page(
    *,
    symbol: str,
    months: int,
    start: datetime,
    end: datetime,
    limit: int,
    newest_first: bool = False,
) -> list[Candle]:
    """The first `limit` buckets of `months` calendar months (month, quarter, year), counted
    from January 2000, starting in [start, end), in the order asked for: the day bars of
    each summed. As `bars_page`, `start` moves up to a bucket's start and the last bucket is
    whole. Months are UTC, or the exchange's for a symbol with a calendar (its sessions'
    dates), each labelled by its first local midnight."""
    clock = _clock(symbol, None)
    first = -(-month_index(start) // months) * months
    if month_start(month_index(start)) != start and month_index(start) % months == 0:
        first += months  # `start` is inside a bucket's first month, after its start
    last = -(-(month_index(end) + (month_start(month_index(end)) != end)) // months) * months
    if first >= last:
        return []
    days = bars_page(
        symbol=symbol, step=timedelta(days=1), start=month_start(first), end=month_start(last),
        limit=min(limit * months * 31, (month_start(last) - month_start(first)).days),
        newest_first=newest_first, clock=clock,
    )  # fmt: skip
    buckets: list[list[Candle]] = []
    for day in days:
        key = month_index(day.ts, clock.tz) // months
        if not buckets or month_index(buckets[-1][0].ts, clock.tz) // months != key:
            if len(buckets) == limit:
                break
            buckets.append([])
        buckets[-1].append(day)
    out = []
    for bucket in buckets:
        ordered = bucket[::-1] if newest_first else bucket
        month = month_start(month_index(ordered[0].ts, clock.tz) // months * months)
        out.append(Candle(
            clock.midnight(month.date()), ordered[0].open,
            max(d.high for d in bucket), min(d.low for d in bucket), ordered[-1].close,
            sum(d.volume for d in bucket), sum(d.trades for d in bucket),
        ))  # fmt: skip
    return out


def ticks_page(
    *,
    symbol: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    newest_first: bool = False,
) -> list[tuple[datetime, float, int]]:
    """Up to `limit` ticks with start <= ts < end (either bound optional) as (ts, price,
    size), in the order asked for: a scan of the (symbol, ts) key from one end."""
    ticks = Tick.objects.filter(symbol_id=symbol)
    if start is not None:
        ticks = ticks.filter(ts__gte=start)
    if end is not None:
        ticks = ticks.filter(ts__lt=end)
    order = "-ts" if newest_first else "ts"
    return list(ticks.order_by(order).values_list("ts", "price", "size")[:limit])


@dataclass(frozen=True)
class SnapshotBars:
    """A symbol's bars for a snapshot: today's session (the UTC day, or its exchange's
    current or latest session), the latest one before it within the past week, and the
    newest 1-minute bar since today's began (each None when there is none)."""

    day: Candle | None = None
    prev_day: Candle | None = None
    minute: Candle | None = None


# Day bars of many symbols in one statement, read as `bars_for_range` reads 1d bars on plain
# PostgreSQL (the stored roll-ups, then `date_bin` over the minutes after the last one), with
# index range scans per symbol and never a scan of the whole table.
_DAYS_OF_MANY = """
SELECT s.ticker, d.ts, d.open, d.high, d.low, d.close, d.volume, d.trades
FROM unnest(%(tickers)s::varchar[]) AS s(ticker)
CROSS JOIN LATERAL (
    SELECT coalesce(
        (SELECT b.ts + %(step)s FROM market_bar b
         WHERE b.symbol_id = s.ticker AND b.interval = '1d' ORDER BY b.ts DESC LIMIT 1),
        '-infinity'::timestamptz) AS upto
) AS mark
CROSS JOIN LATERAL (
    (SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades
     FROM market_bar b
     WHERE b.symbol_id = s.ticker AND b.interval = '1d'
       AND b.ts >= %(start)s AND b.ts < least(%(end)s, mark.upto))
    UNION ALL
    (SELECT date_bin(%(step)s, m.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
            (array_agg(m.open ORDER BY m.ts))[1], max(m.high), min(m.low),
            (array_agg(m.close ORDER BY m.ts DESC))[1], sum(m.volume)::bigint,
            sum(m.trades)::int
     FROM market_bar m
     WHERE m.symbol_id = s.ticker AND m.interval = '1m'
       AND m.ts >= greatest(%(start)s, mark.upto) AND m.ts < %(end)s
     GROUP BY 1)
) AS d
"""

_DAYS_OF_MANY_VIEW = """
SELECT symbol_id, ts, open, high, low, close, volume, trades FROM {view}
WHERE symbol_id = ANY(%(tickers)s::varchar[]) AND ts >= %(start)s AND ts < %(end)s
"""

# The newest 1-minute bar of each symbol since `since`: one backward index probe each.
_NEWEST_MINUTES = """
SELECT s.ticker, m.ts, m.open, m.high, m.low, m.close, m.volume, m.trades
FROM unnest(%(tickers)s::varchar[]) AS s(ticker)
CROSS JOIN LATERAL (
    SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades FROM market_bar b
    WHERE b.symbol_id = s.ticker AND b.interval = '1m' AND b.ts >= %(since)s
    ORDER BY b.ts DESC LIMIT 1
) AS m
"""

PREVIOUS_DAY_REACH = timedelta(days=7)  # how far back a previous day's bar is looked for


def snapshot_bars(*, tickers: list[str], now: datetime) -> dict[str, SnapshotBars]:
    """Each ticker's `SnapshotBars` at `now`, in two statements whatever the number of
    tickers (the Polygon-compatible snapshots, docs/polygon.md#snapshots)."""
    if not tickers:
        return {}
    clocks = sessions.clocks_of(tickers)
    by_session = {t: _session_snapshot(t, clocks[t], now) for t in tickers if clocks[t].key}
    tickers = [t for t in tickers if t not in by_session]
    if not tickers:
        return by_session
    step = BAR_INTERVALS["1d"]
    today = floor_to(now, step)
    params = {"tickers": tickers, "step": step, "start": today - PREVIOUS_DAY_REACH,
              "end": today + step, "since": today}  # fmt: skip
    view = timescale.aggregate_view("1d")
    days_sql = _DAYS_OF_MANY
    if view and timescale.installed(connection):
        days_sql = _DAYS_OF_MANY_VIEW.format(view=view)
    days: dict[str, dict[str, Candle]] = {t: {} for t in tickers}
    minutes: dict[str, Candle] = {}
    with connection.cursor() as cursor:
        cursor.execute(days_sql, params)
        for ticker, *row in cursor.fetchall():
            candle = Candle(*row)
            if candle.ts == today:
                days[ticker]["day"] = candle
            elif candle.ts < today and (
                "prev" not in days[ticker] or candle.ts > days[ticker]["prev"].ts
            ):
                days[ticker]["prev"] = candle
        cursor.execute(_NEWEST_MINUTES, params)
        for ticker, *row in cursor.fetchall():
            minutes[ticker] = Candle(*row)
    return {
        **by_session,
        **{
            t: SnapshotBars(day=days[t].get("day"), prev_day=days[t].get("prev"),
                            minute=minutes.get(t))
            for t in tickers
        },
    }  # fmt: skip


def _session_snapshot(ticker: str, clock: sessions.Clock, now: datetime) -> SnapshotBars:
    """`SnapshotBars` of a symbol with an exchange calendar: its current (or latest)
    session, the one before it with trades within the past week, and its newest minute."""
    current = clock.at_or_before(epoch_micros(now))
    if current is None:
        return SnapshotBars()
    label = clock.label(current)
    date_of = UNIX_EPOCH + timedelta(days=current)
    days = session_days(symbol=ticker, clock=clock, start=date_of - PREVIOUS_DAY_REACH,
                        end=date_of + timedelta(days=1))  # fmt: skip
    today = next((d for d in days if d.ts == label), None)
    earlier = [d for d in days if d.ts < label]
    minute = Bar.objects.filter(symbol_id=ticker, interval=BAR_INTERVAL_1M, ts__gte=label)
    newest = (
        minute.order_by("-ts")
        .values_list("ts", "open", "high", "low", "close", "volume", "trades")
        .first()
    )
    return SnapshotBars(day=today, prev_day=earlier[-1] if earlier else None,
                        minute=Candle(*newest) if newest else None)  # fmt: skip
