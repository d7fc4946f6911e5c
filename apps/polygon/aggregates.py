"""The gateway's aggregate events (docs/polygon.md#websocket): `AM` from the stored
1-minute bars, read once per process for all its sockets, and `A` summed once per process
from the trades of the batches. Which socket may have which closed second or minute is
decided per socket by the batch its subscription began with (`need`); the feed
(`feed.py`) routes batches to them."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from channels.db import database_sync_to_async

from apps.ops.timestamps import UNIX_EPOCH
from apps.polygon import messages, selectors

logger = logging.getLogger(__name__)

KEEP_MINUTES = 5  # closed minutes whose AM events stay cached (late sockets of a batch)


def _at(micros: int):
    return UNIX_EPOCH + timedelta(microseconds=micros)


class MinuteBars:
    """`AM` events of closed minutes, read from the stored bars once per process.

    Every socket of a process sees the same batches, so each notices the same closed
    minutes; the first to ask reads them (one query for the whole batch), the others wait
    for that read. The day's volume and value are carried forward per symbol, so a closed
    minute reads its own bar, not the whole day's.
    """

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, loop) -> None:
        self._loop = loop
        self._events: dict[tuple[str, int], asyncio.Future] = {}
        # symbol -> (day µs, through minute µs, day volume, day value, day open)
        self._days: dict[str, tuple[int, int, int, float, float]] = {}

    async def events(self, closed: list[tuple[str, int]]) -> list[dict]:
        """The `AM` events of `(symbol, minute start µs)` pairs, in that order."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # futures belong to one loop (one per Daphne process)
            self._reset(loop)
        missing = sorted({k for k in closed if k not in self._events}, key=lambda k: k[1])
        if missing:
            future = loop.create_future()
            for k in missing:
                self._events[k] = future
            try:
                read = await self._read(missing)
            except Exception:
                logger.exception("could not read the bars of %d closed minutes", len(missing))
                read = {}
                for k in missing:
                    self._events.pop(k, None)
            future.set_result(read)
            cutoff = missing[-1][1] - KEEP_MINUTES * messages.MINUTE_US
            self._events = {k: f for k, f in self._events.items() if k[1] >= cutoff}
        found = []
        for k in closed:
            future = self._events.get(k)
            event = (await future).get(k) if future is not None else None
            if event is not None:
                found.append(event)
        return found

    async def _read(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
        wanted: dict[str, set[int]] = {}
        for symbol, minute in keys:
            wanted.setdefault(symbol, set()).add(minute)
        spans, starts = [], {}
        for symbol, minutes in wanted.items():
            first, last = min(minutes), max(minutes)
            day = first - first % messages.DAY_US
            carried = self._days.get(symbol)
            if carried and carried[0] == day and carried[1] < first:
                starts[symbol] = carried
                since = carried[1] + messages.MINUTE_US
            else:
                starts[symbol] = (day, day - messages.MINUTE_US, 0, 0.0, 0.0)
                since = day
            spans.append((symbol, _at(since), _at(last)))
        rows = await database_sync_to_async(selectors.minute_bars_between)(spans=spans)
        found: dict[tuple[str, int], dict] = {}
        totals = dict(starts)
        for symbol, *bar in rows:
            day, _, volume, value, day_open = totals[symbol]
            start = bar[0]
            if start - start % messages.DAY_US != day:  # the span crossed midnight UTC
                day, volume, value, day_open = start - start % messages.DAY_US, 0, 0.0, 0.0
            o, h, l, c_, v = bar[1:6]  # noqa: E741
            if not volume:
                day_open = o
            volume += v
            value += v * (h + l + c_) / 3
            totals[symbol] = (day, start, volume, value, day_open)
            if start in wanted[symbol]:
                found[(symbol, start)] = messages.minute_agg(
                    symbol, tuple(bar), day_volume=volume, day_value=value, day_open=day_open
                )
        for symbol, minutes in wanted.items():
            day, _, volume, value, day_open = totals[symbol]
            last = max(minutes)
            if last - last % messages.DAY_US != day:
                continue
            known = self._days.get(symbol)
            if known is None or (known[0], known[1]) < (day, last):
                self._days[symbol] = (day, last, volume, value, day_open)
        return found


minute_bars = MinuteBars()


class SecondAggregates:
    """`A` events summed once per process from the trades of the batches, for the symbols any
    local socket wants: a second closes when a trade of a later second arrives.

    Which socket may have a closed second (`need`): one whose subscription covered the
    symbol since a batch no later than the last batch with a trade of the second before it.
    Such a socket saw a trade of an earlier second, so it saw this second from its first
    trade: the rule of docs/polygon.md ("the first second a socket sees of a symbol is not
    sent; every one after it is whole"), without summing per socket. The first second
    summed here has no second before it and goes to no one.
    """

    def __init__(self) -> None:
        # symbol -> [the open second, the last batch with a trade in it, its `need`]
        self.open: dict[str, list] = {}

    def add(self, ticks: list[dict], wanted: set[str], seq: int) -> list[tuple[dict, int]]:
        """The batch numbered `seq`: the seconds it closes, as `(A event, need)`."""
        every = "*" in wanted
        closed = []
        for tick in ticks:
            symbol = tick["symbol"]
            if not (every or symbol in wanted):
                continue
            micros = messages.tick_micros(tick["ts"])
            start = micros - micros % messages.SECOND_US
            current = self.open.get(symbol)
            if current is None or start > current[0].start:
                if current is not None and current[2] is not None:
                    closed.append((messages.second_agg(symbol, current[0]), current[2]))
                need = current[1] if current is not None else None
                second = messages.SecondOfTrades.of(start, tick, whole=need is not None)
                self.open[symbol] = [second, seq, need]
            elif start == current[0].start:
                current[0].add(tick)
                current[1] = seq
        return closed

    def keep_only(self, wanted: set[str]) -> None:
        if "*" not in wanted:
            self.open = {s: agg for s, agg in self.open.items() if s in wanted}


class MinuteCloser:
    """The minutes the batches close, once per process, for the symbols any local socket
    wants `AM` of: a symbol's minute closes with its first tick of a later minute. A socket
    may have a minute's `AM` (`need`) if its subscription covered the symbol by the last
    batch with a tick in that minute: it saw a tick of the minute, as docs/polygon.md has
    it."""

    def __init__(self) -> None:
        self.minutes: dict[str, list[int]] = {}  # symbol -> [minute µs, last batch with a tick]

    def add(self, ticks: list[dict], wanted: set[str], seq: int) -> list[tuple[str, int, int]]:
        """The batch numbered `seq`: the minutes it closes, as `(symbol, minute µs, need)`."""
        every = "*" in wanted
        closed = []
        for tick in ticks:
            symbol = tick["symbol"]
            if not (every or symbol in wanted):
                continue
            minute = messages.minute_of(tick["ts"])
            last = self.minutes.get(symbol)
            if last is None or minute > last[0]:
                if last is not None:
                    closed.append((symbol, last[0], last[1]))
                self.minutes[symbol] = [minute, seq]
            elif minute == last[0]:
                last[1] = seq
        return closed

    def keep_only(self, wanted: set[str]) -> None:
        if "*" not in wanted:
            self.minutes = {s: m for s, m in self.minutes.items() if s in wanted}
