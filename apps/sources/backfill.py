"""Backfill from a vendor (docs/sources.md#backfill-from-a-vendor): `manage.py backfill
--source NAME --days N` loads the vendor's 1-minute bars of the source's symbols for the N
days before the current minute, from its REST history (Polygon/Massive's `/v2/aggs`,
Alpaca's `/v2/stocks/bars`, through the source's `Feed.history_bars`).

Each bar becomes one tick at its start that carries the whole bar, as `import_bars` makes
them, and goes through `ingest(batch, live=False)`: the 1-minute bars are the vendor's, the
longer bars add them up, the indicators run over the closes, no alert fires and nothing is
published. A minute that already has a stored bar (the live feed's, an import's, an earlier
run's) is left as it is: adding a bar's tick to it would count its trades twice. So a
second run stores nothing new.

Resuming. Each symbol's history is asked for in one paged request stream and stored a UTC
day at a time, each day in one transaction. After a day is stored, the range it covers is
added to the source's checkpoint in Redis (`keys.source_backfill`: per symbol, the ranges
of time already fetched), and the next run asks the vendor only for what the ranges do not
cover. The checkpoint lives in Redis rather than being read off the stored bars because
the bars cannot tell it: a symbol fed live has bars up to now long before its history is
loaded, and a day without trades (a weekend, a holiday) stores nothing yet is done. If
Redis forgets the checkpoint, the next run asks for everything again and stores nothing
twice (the rule above), so it only costs requests. The newest `SETTLE` minutes are never
marked done: a vendor may publish them late (delayed plans, late trades), so the next run
asks for them again.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import requests
from django.db import connection

from apps.indicators.engine import PRICE_MAX
from apps.ingest.pipeline import Slots, TickBatch, ingest
from apps.market import keys, timescale
from apps.market.backfill import BackfillError, check_days, refresh_aggregates
from apps.market.constants import BAR_INTERVAL_1M
from apps.market.models import Bar, Source, Symbol
from apps.ops.redis_client import redis_client
from apps.ops.timestamps import UNIX_EPOCH, floor_to
from apps.sources.live import feeds
from apps.sources.live.runner import feed_config, make_feed
from apps.sources.services import write_newer_hot_states

SETTLE = timedelta(minutes=15)  # the newest history, asked for again by the next run
_DAY = timedelta(days=1)
_MINUTE = timedelta(minutes=1)
_SIZE_MAX = 2**31 - 1
_STATUS = re.compile(r" answered (\d{3}):")  # feeds.HistoryError's words


@dataclass(frozen=True)
class Piece:
    """A symbol's time the checkpoint does not cover: one paged request stream."""

    symbol: str
    start: datetime
    end: datetime

    def days(self) -> list[tuple[datetime, datetime]]:
        """The piece cut at UTC midnights: the units stored, checkpointed and counted."""
        out, at = [], self.start
        while at < self.end:
            upto = min(floor_to(at, _DAY) + _DAY, self.end)
            out.append((at, upto))
            at = upto
        return out


@dataclass
class Plan:
    """What a run will ask the vendor for: [start, end) of each symbol, less the ranges
    the checkpoint holds."""

    source: Source
    feed: feeds.Feed
    start: datetime
    end: datetime
    settled: datetime  # the checkpoint marks only time before this
    symbols: list[str]
    pieces: list[Piece]

    @property
    def days(self) -> int:
        """Symbol-days to fetch: the progress bar's total."""
        return sum(len(piece.days()) for piece in self.pieces)

    @property
    def resumed(self) -> bool:
        """Whether the checkpoint covered some of the window (an earlier run stored it)."""
        asked = sum((piece.end - piece.start for piece in self.pieces), timedelta())
        return asked < len(self.symbols) * (self.end - self.start)


@dataclass
class Result:
    """What a run did."""

    bars: int = 0  # bars the vendor sent
    stored: int = 0  # of them, new here
    kept: int = 0  # of them, for minutes that had a stored bar (left as it was)
    malformed: Counter = field(default_factory=Counter)  # left out, by what was wrong
    seconds: float = 0.0


def vendor_sources() -> list[Source]:
    return list(Source.objects.filter(kind__in=Source.LIVE_KINDS).order_by("name"))


def vendor_source(name: str) -> Source:
    """The Source row named, which must be a vendor's; the error lists those that are."""
    valid = vendor_sources()
    listed = ", ".join(f"{s.name} ({s.kind})" for s in valid) or (
        "none yet: add a Polygon/Massive or Alpaca source in the admin (Sources)"
    )
    source = Source.objects.filter(name=name).first()
    if source is None:
        raise BackfillError(f"no source named {name!r}; vendor sources: {listed}")
    if source.kind not in Source.LIVE_KINDS:
        raise BackfillError(
            f"source {name!r} is {source.get_kind_display()}, not a vendor with a REST"
            f" history; vendor sources: {listed}"
        )
    return source


def check_credentials(source: Source) -> None:
    """BackfillError naming the environment variables of the source's key that are unset,
    before any request (the feed's own error speaks of the live process)."""
    names = [name for name in source.credential_names() if name]
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        what = "API key and secret" if len(names) > 1 else "API key"
        raise BackfillError(
            f"set {' and '.join(missing)} in the environment: the {what} of source"
            f" {source.name!r} ({source.get_kind_display()})"
        )


def plan(
    name: str, *, days: int, tickers: list[str] | None = None, now: datetime | None = None
) -> Plan:
    """Check the arguments and work out the requests: BackfillError says what is wrong."""
    check_days(days)
    source = vendor_source(name)
    symbols = list(
        Symbol.objects.filter(source=source, active=True)
        .order_by("ticker")
        .values_list("ticker", flat=True)
    )
    if not symbols:
        raise BackfillError(
            f"source {name!r} has no active symbols: give symbols this source in the admin"
            " (Symbols, the Source field)"
        )
    if tickers:
        wanted = [t.strip().upper() for t in tickers if t.strip()]
        foreign = [t for t in wanted if t not in symbols]
        if foreign:
            raise BackfillError(
                f"not active symbols of source {name!r}: {', '.join(foreign)}; its symbols:"
                f" {', '.join(symbols)}"
            )
        symbols = [t for t in symbols if t in wanted]
    check_credentials(source)
    now = now or datetime.now(UTC)
    end = floor_to(now, _MINUTE)  # the minute still open is not history yet
    start = end - days * _DAY
    done = checkpoint(source.name)
    pieces = [
        Piece(symbol, a, b)
        for symbol in symbols
        for a, b in _missing(start, end, done.get(symbol, []))
    ]
    return Plan(
        source=source, feed=make_feed(feed_config(source)), start=start, end=end,
        settled=floor_to(now - SETTLE, _MINUTE), symbols=symbols, pieces=pieces,
    )  # fmt: skip


def run(plan: Plan, *, progress: Callable[[str, datetime], None] | None = None) -> Result:
    """Fetch and store every piece, a day at a time; `progress(symbol, day_start)` after
    each day. A vendor error is a BackfillError; what was stored before it stays, and the
    checkpoint makes the next run continue from there."""
    if timescale.installed(connection) and connection.in_atomic_block:
        raise BackfillError(
            "run the backfill outside a transaction: TimescaleDB refreshes its continuous"
            " aggregates only in autocommit mode"
        )
    began = time.perf_counter()
    result = Result()
    for piece in plan.pieces:
        days = piece.days()
        day = 0
        pending: list[feeds.Bar] = []
        for bar in _vendor_bars(plan, piece):
            ts = _bar_time(bar)
            if not piece.start <= ts < piece.end:
                result.malformed["bar outside the time asked for"] += 1
                continue
            while ts >= days[day][1]:  # bars come in time order: that day is all here
                _store_day(plan, piece.symbol, days[day], pending, result)
                if progress is not None:
                    progress(piece.symbol, days[day][0])
                pending, day = [], day + 1
            pending.append(bar)
        for span in days[day:]:
            _store_day(plan, piece.symbol, span, pending, result)
            if progress is not None:
                progress(piece.symbol, span[0])
            pending = []
    result.seconds = time.perf_counter() - began
    return result


def checkpoint(source: str) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per symbol, the ranges of the source's history already stored (merged, in order)."""
    raw = redis_client().hgetall(keys.source_backfill(source))
    return {symbol.decode(): _ranges(value) for symbol, value in raw.items()}


def _vendor_bars(plan: Plan, piece: Piece) -> Iterator[feeds.Bar]:
    """The feed's bars, its errors turned into BackfillErrors that say what to do."""
    source = plan.source
    again = "What was stored stays; run the backfill again to continue from there."
    bars = plan.feed.history_bars(piece.symbol, piece.start, piece.end)
    while True:
        try:
            bar = next(bars)
        except StopIteration:
            return
        except feeds.HistoryError as exc:
            status = _STATUS.search(str(exc))
            if status and status[1] in ("401", "403"):
                names = " and ".join(n for n in source.credential_names() if n)
                raise BackfillError(
                    f"{source.name}: the vendor refused the credentials ({exc}): check {names}"
                    " (a wrong or expired key, or a plan without this history)"
                ) from exc
            raise BackfillError(f"{source.name}: {exc}. {again}") from exc
        except requests.RequestException as exc:
            if not isinstance(exc, requests.JSONDecodeError):
                raise BackfillError(
                    f"{source.name}: could not reach {source.history_url()} ({exc}). {again}"
                ) from exc
            raise BackfillError(
                f"{source.name}: {source.history_url()} answered what is not JSON ({exc}). {again}"
            ) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise BackfillError(
                f"{source.name}: an answer of {source.history_url()} could not be read as"
                f" minute bars ({exc!r}). {again}"
            ) from exc
        yield bar


def _store_day(
    plan: Plan, symbol: str, span: tuple[datetime, datetime], bars: list[feeds.Bar],
    result: Result,
) -> None:  # fmt: skip
    """One day of a symbol in one transaction (the pipeline's), then its checkpoint."""
    start, end = span
    result.bars += len(bars)
    valid = [bar for bar in bars if _valid(bar, result.malformed)]
    if valid:
        minutes = [floor_to(_bar_time(bar), _MINUTE) for bar in valid]
        rows = Bar.objects.filter(
            symbol_id=symbol, interval=BAR_INTERVAL_1M, ts__gte=min(minutes), ts__lte=max(minutes)
        )
        stored = set(rows.values_list("ts", flat=True))
        fresh = [bar for bar, minute in zip(valid, minutes, strict=True) if minute not in stored]
        result.kept += len(valid) - len(fresh)
        if fresh:
            outcome = ingest(_batch(symbol, fresh), live=False)
            result.stored += outcome.stored
            if outcome.stored:
                write_newer_hot_states(outcome.states)
                refresh_aggregates(start=start, end=end, tickers=[symbol])
    if start < plan.settled:
        _mark(plan.source.name, symbol, start, min(end, plan.settled))


def _batch(symbol: str, bars: list[feeds.Bar]) -> TickBatch:
    """Each bar as one tick at its start carrying the whole bar (as `import_bars`)."""
    return TickBatch(
        symbols=[symbol] * len(bars), ts=[_bar_time(bar) for bar in bars],
        prices=np.array([bar.close for bar in bars], dtype=np.float64),
        sizes=np.array([bar.volume for bar in bars], dtype=np.int64),
        slots=Slots(
            np.array([bar.open for bar in bars], dtype=np.float64),
            np.array([bar.high for bar in bars], dtype=np.float64),
            np.array([bar.low for bar in bars], dtype=np.float64),
            np.array([bar.trades or 1 for bar in bars], dtype=np.float64),
        ),
    )  # fmt: skip


def _valid(bar: feeds.Bar, malformed: Counter) -> bool:
    """A bar the pipeline takes; one it would refuse is counted by what is wrong and left
    out, as the live feeds count what they cannot read, rather than stopping the backfill
    on a row that every run would fetch again."""
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(p) and 0 < p <= PRICE_MAX for p in prices):
        malformed["bar with a price that is not a positive number"] += 1
    elif not bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high:
        malformed["bar whose low and high do not hold its open and close"] += 1
    elif not 1 <= bar.volume <= _SIZE_MAX:
        malformed["bar with a volume that is not 1 to 2,147,483,647"] += 1
    elif bar.trades is not None and not 1 <= bar.trades <= _SIZE_MAX:
        malformed["bar with a bad trade count"] += 1
    else:
        return True
    return False


def _bar_time(bar: feeds.Bar) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=bar.ns // 1000)


def _mark(source: str, symbol: str, start: datetime, end: datetime) -> None:
    """Add [start, end) to the symbol's checkpoint. Two runs of one source at once may
    lose each other's mark (read, merge, write): the next run then asks again, no more."""
    client = redis_client()
    key = keys.source_backfill(source)
    ranges = _merge([*_ranges(client.hget(key, symbol)), (start, end)])
    client.hset(key, symbol, orjson.dumps([[a.isoformat(), b.isoformat()] for a, b in ranges]))


def _ranges(value: bytes | None) -> list[tuple[datetime, datetime]]:
    if not value:
        return []
    return [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in orjson.loads(value)]


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping and touching ranges as one."""
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _missing(
    start: datetime, end: datetime, done: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) that no range in `done` (merged, in order) covers."""
    gaps, at = [], start
    for a, b in done:
        if b <= at or a >= end:
            continue
        if a > at:
            gaps.append((at, a))
        at = max(at, b)
    if at < end:
        gaps.append((at, end))
    return gaps
