"""A live feed's trades and quotes into ticks (docs/sources.md#conflation), slot by slot as
the clock passes them.

Trades come in as the feed sends them; `close(until)` turns the trades of every slot that
ended by `until` into ticks (through `apps.sources.conflation.conflate`, as an import does),
each with the newest quote received before its slot ended. A trade whose slot was already
closed is late: it comes out apart, for `apps.ingest.late.fold`. A trade id seen before for
the symbol (a repeat after a reconnect, a gap filled from the vendor's history that overlaps
what the feed sent) counts once; the ids are kept for `retain_slots` slots behind the newest
trade, so a feed that stops (a disconnection) keeps the ids its gap fill needs.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from apps.ingest.pipeline import TickBatch
from apps.market.simulator import Quotes
from apps.ops.timestamps import UNIX_EPOCH
from apps.sources.conflation import Trades, conflate

Quote = tuple[int, float, float, float, float]  # ns, bid, ask, bid size, ask size (shares)


@dataclass
class Closed:
    """What one `close` let out: ticks of the slots that ended, and late trades conflated
    per slot (each row: one slot's late trades)."""

    ticks: TickBatch | None = None
    late: TickBatch | None = None


class _Columns:
    """Trades as growing lists (appending is what a feed does most)."""

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self.ns: list[int] = []
        self.prices: list[float] = []
        self.sizes: list[int] = []

    def __len__(self) -> int:
        return len(self.ns)

    def append(self, symbol: str, ns: int, price: float, size: int) -> None:
        self.symbols.append(symbol)
        self.ns.append(ns)
        self.prices.append(price)
        self.sizes.append(size)

    def trades(self) -> Trades:
        return Trades(
            symbols=np.array(self.symbols, dtype=str), ns=np.array(self.ns, dtype=np.int64),
            prices=np.array(self.prices, dtype=np.float64),
            sizes=np.array(self.sizes, dtype=np.int64),
        )  # fmt: skip


class LiveConflator:
    """Trades and quotes of one feed, held until their slot ends."""

    def __init__(self, *, interval_ns: int, retain_slots: int = 600) -> None:
        if interval_ns <= 0 or interval_ns % 1000:
            raise ValueError("the slot must be a positive whole number of microseconds")
        self.interval_ns = interval_ns
        self.retain_slots = retain_slots
        self.closed_through: int | None = None  # slots up to this one are let out
        self.newest_slot: int | None = None  # of the newest trade received
        self.duplicates = 0  # trades dropped as already counted
        self._pending = _Columns()
        self._late = _Columns()
        self._seen: dict[int, set[tuple[str, str]]] = {}  # slot -> (symbol, trade id)
        self._quotes: dict[str, list[Quote]] = {}  # per symbol, in time order
        self._standing: dict[str, Quote] = {}  # the newest quote of a slot already closed
        self._quotes_known_from = 0  # ns: older quotes stand for no tick after it

    @property
    def held(self) -> int:
        """Trades waiting for their slot to end."""
        return len(self._pending) + len(self._late)

    def add_trade(self, symbol: str, ns: int, price: float, size: int, trade_id: str = "") -> bool:
        """Take a trade; False if its id was already counted for the symbol."""
        slot = ns // self.interval_ns
        if trade_id:
            seen = self._seen.setdefault(slot, set())
            key = (symbol, trade_id)
            if key in seen:
                self.duplicates += 1
                return False
            seen.add(key)
        if self.newest_slot is None or slot > self.newest_slot:
            self.newest_slot = slot
        closed = self.closed_through is not None and slot <= self.closed_through
        (self._late if closed else self._pending).append(symbol, ns, price, size)
        return True

    def add_quote(self, symbol: str, ns: int, quote: tuple[float, float, float, float]) -> None:
        """Take a quote: bid, ask, bid size, ask size (shares)."""
        quotes = self._quotes.setdefault(symbol, [])
        entry = (ns, *quote)
        if quotes and quotes[-1][0] > ns:  # out of order: keep the list sorted
            quotes.insert(bisect_left(quotes, entry), entry)
        else:
            quotes.append(entry)

    def close(self, until_ns: int) -> Closed:
        """Let out every slot that ended by `until_ns`, and the late trades.

        Slots after the newest trade's stay open whatever the clock says: trades of a time
        when the feed was away (a gap filled from history) are not late."""
        if self.newest_slot is None:
            return Closed()
        through = min(until_ns // self.interval_ns - 1, self.newest_slot)
        if self.closed_through is not None and through <= self.closed_through:
            return Closed(late=self._take_late())
        self.closed_through = through
        closed = Closed(late=self._take_late())
        if len(self._pending):
            trades = self._pending.trades()
            ready = trades.ns // self.interval_ns <= through
            if ready.any():
                self._pending = _keep(trades, ~ready)
                ticks = conflate(_rows(trades, ready), interval_ns=self.interval_ns)
                closed.ticks = _with_quotes(ticks, self._quote_at(ticks))
        self._settle_quotes((through + 1) * self.interval_ns)
        self._forget_ids()
        return closed

    def forget_quotes(self) -> None:
        """The feed went away: the quotes of the gap are unknown, so a tick after the newest
        slot received so far carries none rather than a stale one, until a quote comes."""
        if self.newest_slot is not None:
            self._quotes_known_from = (self.newest_slot + 1) * self.interval_ns

    def _take_late(self) -> TickBatch | None:
        if not len(self._late):
            return None
        trades, self._late = self._late.trades(), _Columns()
        return conflate(trades, interval_ns=self.interval_ns)

    def _quote_at(self, ticks: TickBatch) -> list[Quote | None]:
        """For each tick, the newest quote of its symbol received before its slot ended."""
        found: list[Quote | None] = []
        for symbol, ts in zip(ticks.symbols, ticks.ts, strict=True):
            start = (ts - UNIX_EPOCH) // timedelta(microseconds=1) * 1000
            quotes = self._quotes.get(symbol, ())
            i = bisect_left(quotes, (start + self.interval_ns,))
            quote = quotes[i - 1] if i else None
            standing = self._standing.get(symbol)
            if standing is not None and (quote is None or standing[0] > quote[0]):
                quote = standing  # a quote that came late is older than the one standing
            if quote is not None and quote[0] < self._quotes_known_from <= start:
                quote = None  # from before a gap this tick is in
            found.append(quote)
        return found

    def _settle_quotes(self, end_ns: int) -> None:
        """Quotes of closed slots: only each symbol's newest still counts (it stands)."""
        for symbol, quotes in list(self._quotes.items()):
            i = bisect_left(quotes, (end_ns,))
            if i:
                standing = self._standing.get(symbol)
                if standing is None or quotes[i - 1][0] >= standing[0]:
                    self._standing[symbol] = quotes[i - 1]
                del quotes[:i]
            if not quotes:
                del self._quotes[symbol]

    def _forget_ids(self) -> None:
        if self.newest_slot is None or self.closed_through is None:
            return
        horizon = min(self.closed_through, self.newest_slot) - self.retain_slots
        for slot in [s for s in self._seen if s < horizon]:
            del self._seen[slot]


def _rows(trades: Trades, rows: np.ndarray) -> Trades:
    return Trades(trades.symbols[rows], trades.ns[rows], trades.prices[rows], trades.sizes[rows])


def _keep(trades: Trades, rows: np.ndarray) -> _Columns:
    kept = _Columns()
    kept.symbols = trades.symbols[rows].tolist()
    kept.ns = trades.ns[rows].tolist()
    kept.prices = trades.prices[rows].tolist()
    kept.sizes = trades.sizes[rows].tolist()
    return kept


def _with_quotes(ticks: TickBatch, quotes: list[Quote | None]) -> TickBatch:
    if all(q is None for q in quotes):
        return ticks
    nan = (np.nan,) * 4
    columns = np.array([nan if q is None else q[1:] for q in quotes], dtype=np.float64).T
    return TickBatch(symbols=ticks.symbols, ts=ticks.ts, prices=ticks.prices, sizes=ticks.sizes,
                     quotes=Quotes(*columns), slots=ticks.slots)  # fmt: skip
