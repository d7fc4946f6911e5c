"""LiveConflator (apps/sources/live/conflator.py) on its own, no database: a live feed's
trades become one tick per symbol and slot as docs/sources.md#conflation says, each repeat
of a trade id counts once, a trade whose slot is already out comes back as `late`, and each
tick carries the quote that stood when its slot ended. Every expected value is worked out
here from the trades given (slots of 500 ms from T0)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from apps.ingest.pipeline import TickBatch
from apps.sources.live.conflator import LiveConflator

T0 = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
T0_NS = 1_767_364_200 * 10**9  # T0: 20,455 days and 52,200 s after the epoch
SLOT_NS = 500_000_000


def ns(ms: int) -> int:
    """Unix ns of T0 + ms."""
    return T0_NS + ms * 1_000_000


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def rows(batch: TickBatch | None) -> list[tuple]:
    """Each tick as (symbol, ts, price, size, open, high, low, trades, quote), in the batch's
    order; None for what a tick does not have (one trade: no open/high/low/count)."""
    if batch is None:
        return []

    def value(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    found = []
    for i, (symbol, ts) in enumerate(zip(batch.symbols, batch.ts, strict=True)):
        slot = (None,) * 4
        if batch.slots is not None:
            slot = tuple(value(column[i]) for column in batch.slots.columns())
        quote = None
        if batch.quotes is not None and not math.isnan(batch.quotes.bids[i]):
            quote = tuple(float(column[i]) for column in batch.quotes.columns())
        found.append((symbol, ts, float(batch.prices[i]), int(batch.sizes[i]), *slot, quote))
    return found


def conflator(**kwargs: int) -> LiveConflator:
    return LiveConflator(interval_ns=SLOT_NS, **kwargs)


def test_each_symbols_trades_of_a_slot_become_one_tick_and_a_slot_without_trades_none():
    live = conflator()
    # Added out of time order within the slot: the price is the last by time, not by arrival.
    live.add_trade("AAPL", ns(50), 100.0, 10, "1")
    live.add_trade("AAPL", ns(300), 101.5, 20, "2")
    live.add_trade("AAPL", ns(120), 99.0, 5, "3")
    live.add_trade("AAPL", ns(450), 100.5, 1, "4")
    live.add_trade("MSFT", ns(10), 50.0, 3, "1")  # the same id as AAPL's: ids are per symbol
    live.add_trade("MSFT", ns(490), 50.25, 4, "2")
    live.add_trade("TSLA", ns(200), 10.0, 1, "1")
    live.add_trade("TSLA", ns(200), 11.0, 2, "2")  # the same instant: arrival order decides
    live.add_trade("AAPL", ns(1100), 102.0, 7, "5")  # slot 2; slot 1 has no AAPL trade
    assert live.held == 9

    closed = live.close(ns(2000))

    assert rows(closed.ticks) == [
        # slot 0 by time: 100.0 (50 ms), 99.0 (120), 101.5 (300), 100.5 (450); 10+5+20+1
        ("AAPL", at(0), 100.5, 36, 100.0, 101.5, 99.0, 4.0, None),
        ("MSFT", at(0), 50.25, 7, 50.0, 50.25, 50.0, 2.0, None),
        ("TSLA", at(0), 11.0, 3, 10.0, 11.0, 10.0, 2.0, None),
        ("AAPL", at(1000), 102.0, 7, None, None, None, None, None),  # one trade: its price
    ]
    assert closed.late is None
    assert live.held == 0
    assert live.duplicates == 0


def test_a_slot_comes_out_once_it_ended_and_never_past_the_newest_trade():
    live = conflator()
    assert live.close(ns(10_000)).ticks is None  # nothing received, nothing to let out
    live.add_trade("AAPL", ns(100), 10.0, 1, "a")  # slot 0
    live.add_trade("AAPL", ns(600), 11.0, 2, "b")  # slot 1

    first = live.close(ns(500))  # slot 0 ended at 500 ms; slot 1 not yet
    assert rows(first.ticks) == [("AAPL", at(0), 10.0, 1, None, None, None, None, None)]
    assert live.held == 1
    assert live.close(ns(999)).ticks is None  # slot 1 ends at 1000 ms

    # Long after, but slot 1 holds the newest trade: what comes after it is not known yet
    # (a feed that went away: its gap is filled later and is not late), so slot 2 on stay open.
    assert rows(live.close(ns(10_000)).ticks) == [
        ("AAPL", at(500), 11.0, 2, None, None, None, None, None)
    ]
    assert live.closed_through == ns(500) // SLOT_NS  # slot 1, counted from the epoch
    assert live.add_trade("AAPL", ns(5000), 12.0, 3, "c")  # slot 10, after the clock: not late
    closed = live.close(ns(5000))  # slot 10 has not ended yet
    assert (closed.ticks, closed.late, live.held) == (None, None, 1)
    assert rows(live.close(ns(5500)).ticks) == [
        ("AAPL", at(5000), 12.0, 3, None, None, None, None, None)
    ]


def test_a_trade_id_counts_once_per_symbol_also_after_its_slot_is_out():
    live = conflator()
    assert live.add_trade("AAPL", ns(100), 10.0, 5, "7")
    assert not live.add_trade("AAPL", ns(150), 10.5, 6, "7")  # a repeat: dropped
    assert live.add_trade("MSFT", ns(300), 20.0, 2, "7")  # another symbol's 7
    assert live.add_trade("AAPL", ns(200), 11.0, 1, "")  # no id: every one counts
    assert live.add_trade("AAPL", ns(250), 11.0, 1, "")
    assert live.duplicates == 1

    closed = live.close(ns(1000))
    assert rows(closed.ticks) == [
        # 10.0 (100 ms), 11.0 (200), 11.0 (250); sizes 5+1+1; the repeat's 10.5 and 6 nowhere
        ("AAPL", at(0), 11.0, 7, 10.0, 11.0, 10.0, 3.0, None),
        ("MSFT", at(0), 20.0, 2, None, None, None, None, None),
    ]

    # The same trade again after its slot is out (a reconnect's repeat, a gap fill that
    # overlaps): still counted once, and not a late trade either.
    assert not live.add_trade("AAPL", ns(100), 10.0, 5, "7")
    assert live.duplicates == 2
    closed = live.close(ns(2000))
    assert (closed.ticks, closed.late, live.held) == (None, None, 0)


def test_trades_for_a_slot_already_out_come_out_late_conflated_per_slot():
    live = conflator()
    live.add_trade("AAPL", ns(100), 10.0, 5, "a")
    assert rows(live.close(ns(1000)).ticks) == [
        ("AAPL", at(0), 10.0, 5, None, None, None, None, None)
    ]
    live.add_trade("AAPL", ns(400), 9.8, 2, "c")  # slot 0 again: late (arrival order kept)
    live.add_trade("AAPL", ns(200), 10.4, 3, "b")
    live.add_trade("MSFT", ns(50), 30.0, 1, "m")  # slot 0, which MSFT had no tick in: late too
    live.add_trade("AAPL", ns(700), 10.1, 1, "d")  # slot 1: after the newest slot out, on time
    assert live.held == 4

    closed = live.close(ns(1000))
    assert rows(closed.late) == [
        # AAPL's late trades by time: 10.4 (200 ms), 9.8 (400); sizes 3+2
        ("AAPL", at(0), 9.8, 5, 10.4, 10.4, 9.8, 2.0, None),
        ("MSFT", at(0), 30.0, 1, None, None, None, None, None),
    ]
    assert rows(closed.ticks) == [("AAPL", at(500), 10.1, 1, None, None, None, None, None)]

    # A late trade comes out at the next close even when no slot is due.
    live.add_trade("AAPL", ns(800), 10.2, 4, "e")
    closed = live.close(ns(1000))
    assert closed.ticks is None
    assert rows(closed.late) == [("AAPL", at(500), 10.2, 4, None, None, None, None, None)]
    assert live.close(ns(1000)).late is None  # each late trade comes out once


Q1 = (10.0, 10.1, 100.0, 200.0)
Q2 = (10.05, 10.15, 300.0, 400.0)
Q3 = (10.2, 10.3, 500.0, 600.0)
EARLIER = (9.9, 10.0, 700.0, 800.0)
STALE = (8.0, 8.1, 100.0, 100.0)


def test_each_tick_carries_the_newest_quote_received_before_its_slot_ended():
    live = conflator()
    live.add_quote("AAPL", ns(100), Q1)
    live.add_quote("AAPL", ns(400), Q2)
    live.add_quote("AAPL", ns(500), Q3)  # at slot 0's end: slot 1's, not slot 0's
    live.add_quote("AAPL", ns(300), EARLIER)  # out of order: older than Q2, so not it
    live.add_trade("AAPL", ns(200), 10.1, 1, "1")  # slot 0, printed when Q1 stood
    live.add_trade("AAPL", ns(600), 10.25, 2, "2")  # slot 1
    live.add_trade("MSFT", ns(250), 40.0, 3, "1")  # MSFT has no quote
    assert rows(live.close(ns(1000)).ticks) == [
        ("AAPL", at(0), 10.1, 1, None, None, None, None, Q2),  # the slot's, not the trade's
        ("MSFT", at(0), 40.0, 3, None, None, None, None, None),
        ("AAPL", at(500), 10.25, 2, None, None, None, None, Q3),
    ]

    # Q3 stands for later slots without a quote of their own, and a quote older than it
    # that arrives late does not replace it.
    live.add_quote("AAPL", ns(50), STALE)
    live.add_trade("AAPL", ns(1600), 10.3, 4, "3")  # slot 3
    assert rows(live.close(ns(2000)).ticks) == [
        ("AAPL", at(1500), 10.3, 4, None, None, None, None, Q3)
    ]
    live.add_trade("AAPL", ns(2600), 10.35, 5, "4")  # slot 5: STALE was settled meanwhile
    assert rows(live.close(ns(3000)).ticks) == [
        ("AAPL", at(2500), 10.35, 5, None, None, None, None, Q3)
    ]


def test_forget_quotes_leaves_the_ticks_after_a_gap_without_a_quote_until_one_comes():
    live = conflator()
    live.add_quote("AAPL", ns(100), Q1)
    live.add_quote("AAPL", ns(550), Q2)
    live.add_trade("AAPL", ns(200), 10.0, 1, "1")  # slot 0
    live.add_trade("AAPL", ns(600), 10.1, 1, "2")  # slot 1
    assert rows(live.close(ns(500)).ticks) == [("AAPL", at(0), 10.0, 1, None, None, None, None, Q1)]

    live.forget_quotes()  # the feed went away after slot 1's trade
    live.add_trade("AAPL", ns(1200), 10.2, 1, "3")  # slot 2, in the gap
    assert rows(live.close(ns(10_000)).ticks) == [
        ("AAPL", at(500), 10.1, 1, None, None, None, None, Q2),  # received before the gap
        ("AAPL", at(1000), 10.2, 1, None, None, None, None, None),  # Q2 may be stale by then
    ]

    live.add_quote("AAPL", ns(1700), Q3)  # the feed is back: quotes again
    live.add_trade("AAPL", ns(1800), 10.3, 1, "4")  # slot 3
    assert rows(live.close(ns(10_000)).ticks) == [
        ("AAPL", at(1500), 10.3, 1, None, None, None, None, Q3)
    ]


def test_ids_are_kept_for_retain_slots_behind_the_newest_slot_out():
    live = conflator(retain_slots=2)
    live.add_trade("AAPL", ns(100), 10.0, 1, "x")  # slot 0
    live.add_trade("AAPL", ns(1600), 10.5, 1, "y")  # slot 3
    live.close(ns(2000))  # out through slot 3: ids before slot 1 are forgotten
    assert not live.add_trade("AAPL", ns(1600), 10.5, 1, "y")
    assert live.add_trade("AAPL", ns(100), 10.0, 1, "x")  # slot 0 is past the horizon
    assert rows(live.close(ns(2000)).late) == [
        ("AAPL", at(0), 10.0, 1, None, None, None, None, None)
    ]


@pytest.mark.parametrize("interval_ns", [0, -SLOT_NS, 1_500])
def test_a_slot_must_be_a_positive_whole_number_of_microseconds(interval_ns):
    with pytest.raises(ValueError, match="whole number of microseconds"):
        LiveConflator(interval_ns=interval_ns)
