"""Trades into ticks (docs/sources.md#conflation): one tick per symbol and slot.

Real trades come at any time, many in a slot or none. The pipeline and everything after it
(indicators, alerts, fan-out) work per tick, so each symbol's trades of one slot become one
tick at the slot's start: the last price, the summed size, and the slot's first, highest and
lowest prices and trade count, which keep the 1-minute bars exact. A slot without a trade
makes no tick. A trade id seen twice (a reconnect, a file read again) counts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from apps.ingest.pipeline import Slots, TickBatch
from apps.ops.timestamps import UNIX_EPOCH


@dataclass(frozen=True)
class Trades:
    """Trades as columns, in any order: tickers, Unix ns, prices, sizes and, where the
    source has them, trade ids (unique per symbol)."""

    symbols: np.ndarray  # str
    ns: np.ndarray  # int64
    prices: np.ndarray  # float64
    sizes: np.ndarray  # int64
    ids: np.ndarray | None = None  # str

    def __len__(self) -> int:
        return len(self.symbols)


def conflate(trades: Trades, *, interval_ns: int) -> TickBatch:
    """One tick per (symbol, slot of `interval_ns`), in time order."""
    if interval_ns <= 0 or interval_ns % 1000:
        raise ValueError("the slot must be a positive whole number of microseconds")
    symbols = np.asarray(trades.symbols, dtype=str)
    if not len(symbols):
        return TickBatch(symbols=[], ts=[], prices=np.empty(0), sizes=np.empty(0, np.int64))
    keep = _first_of_each_id(symbols, trades.ids)
    symbols, ns = symbols[keep], np.asarray(trades.ns, dtype=np.int64)[keep]
    prices = np.asarray(trades.prices, dtype=np.float64)[keep]
    sizes = np.asarray(trades.sizes, dtype=np.int64)[keep]
    slots = ns // interval_ns
    # By symbol, then slot, then time; trades at the same instant keep their order.
    order = np.lexsort((np.arange(len(ns)), ns, slots, symbols))
    symbols, slots, prices, sizes = symbols[order], slots[order], prices[order], sizes[order]
    new_group = np.empty(len(order), dtype=bool)
    new_group[0] = True
    new_group[1:] = (symbols[1:] != symbols[:-1]) | (slots[1:] != slots[:-1])
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], len(order))
    counts = ends - starts
    single = counts == 1  # a tick of one trade keeps nothing but its price
    opens = np.where(single, np.nan, prices[starts])
    highs = np.where(single, np.nan, np.maximum.reduceat(prices, starts))
    lows = np.where(single, np.nan, np.minimum.reduceat(prices, starts))
    # Ticks in time order, as a live source sends them.
    by_time = np.lexsort((symbols[starts], slots[starts]))
    starts, ends = starts[by_time], ends[by_time]
    micros = slots[starts] * (interval_ns // 1000)
    stamps = {m: UNIX_EPOCH + timedelta(microseconds=int(m)) for m in np.unique(micros)}
    return TickBatch(
        symbols=symbols[starts].tolist(),
        ts=[stamps[m] for m in micros],
        prices=prices[ends - 1],
        sizes=_sums(sizes, starts, ends),
        slots=Slots(
            opens=opens[by_time],
            highs=highs[by_time],
            lows=lows[by_time],
            trades=np.where(single, np.nan, counts.astype(np.float64))[by_time],
        ),
    )


def _sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    totals = np.concatenate([[0], np.cumsum(values)])
    return totals[ends] - totals[starts]


def _first_of_each_id(symbols: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
    """Rows to keep: all, or the first of each (symbol, id) where ids are given (an empty
    id is no id)."""
    if ids is None:
        return np.arange(len(symbols))
    ids = np.asarray(ids, dtype=str)
    keyed = np.char.add(np.char.add(symbols, "\x00"), ids)
    _, first = np.unique(keyed, return_index=True)
    no_id = np.flatnonzero(ids == "")
    return np.union1d(first[ids[first] != ""], no_id)
