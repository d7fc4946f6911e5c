"""late.fold (apps/ingest/late.py) on real PostgreSQL: a trade a live feed delivers after its
slot's tick was stored still reaches that tick and its 1-minute bar (size, count, high and
low), while the tick's price and the bar's open and close stay as they were (the indicators,
alerts and fan-out already went out on them); a late trade of a slot without a tick becomes
a tick of its own, stored as history. Every expected value is worked out here from the
trades given, as docs/sources.md#conflation adds them up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.alerts.models import AlertEvent
from apps.ingest import late
from apps.ingest.pipeline import BatchError, TickBatch, ingest
from apps.market.models import Bar, Tick
from apps.market.rollup import rollup_range
from apps.market.selectors import hot_states
from apps.sources.conflation import Trades, conflate
from apps.testing.factories import AlertRuleFactory

pytestmark = pytest.mark.django_db(transaction=True)  # as the connector: its own commits

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)  # long past: the longer bars are settled
T0_NS = 1_772_461_800 * 10**9  # T0: 20,514 days and 52,200 s after the epoch
SLOT_NS = 500_000_000


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def trades(*rows: tuple[str, int, float, int]) -> TickBatch:
    """(symbol, ms after T0, price, size) trades conflated into 500 ms slots, as the live
    conflator hands them to the pipeline and to `fold`."""
    symbols, ms, prices, sizes = zip(*rows, strict=True)
    return conflate(
        Trades(
            symbols=np.array(symbols),
            ns=np.array([T0_NS + m * 1_000_000 for m in ms], dtype=np.int64),
            prices=np.array(prices, dtype=np.float64),
            sizes=np.array(sizes, dtype=np.int64),
        ),
        interval_ns=SLOT_NS,
    )


def ticks(symbol: str) -> dict[datetime, tuple]:
    rows = Tick.objects.filter(symbol_id=symbol).values_list(
        "ts", "price", "size", "open", "high", "low", "trades"
    )
    return {ts: tuple(rest) for ts, *rest in rows}


def bars(symbol: str, interval: str = "1m") -> dict[datetime, tuple]:
    rows = Bar.objects.filter(symbol_id=symbol, interval=interval).values_list(
        "ts", "open", "high", "low", "close", "volume", "trades"
    )
    return {ts: tuple(rest) for ts, *rest in rows}


@pytest.fixture
def stored(market, fresh_state) -> None:
    """The ticks stored on time, live, before any late trade:
    AAPL slot 0: 100.0 (100 ms, 10), 102.0 (200 ms, 5), 99.5 (300 ms, 20);
    AAPL slot 2: 101.0 (1200 ms, 7); AAPL slot 60: 100.5 (30 s, 3); MSFT slot 0: 50.0 (1)."""
    ingest(
        trades(
            ("AAPL", 100, 100.0, 10), ("AAPL", 200, 102.0, 5), ("AAPL", 300, 99.5, 20),
            ("AAPL", 1200, 101.0, 7), ("AAPL", 30_000, 100.5, 3), ("MSFT", 0, 50.0, 1),
        )
    )  # fmt: skip
    assert ticks("AAPL") == {
        at(0): (99.5, 35, 100.0, 102.0, 99.5, 3),
        at(1000): (101.0, 7, None, None, None, None),
        at(30_000): (100.5, 3, None, None, None, None),
    }
    assert bars("AAPL") == {at(0): (100.0, 102.0, 99.5, 100.5, 45, 5)}
    assert bars("MSFT") == {at(0): (50.0, 50.0, 50.0, 50.0, 1, 1)}


def test_late_trades_reach_their_tick_and_bar_but_not_the_price_open_or_close(stored):
    result = late.fold(
        trades(
            ("AAPL", 150, 103.0, 4), ("AAPL", 400, 98.0, 6),  # slot 0: two more trades
            ("AAPL", 1300, 100.8, 2),  # slot 2, a tick of one trade until now
            ("MSFT", 450, 49.0, 2),
        )
    )  # fmt: skip

    assert (result.folded, result.new_ticks) == (3, 0)
    assert ticks("AAPL") == {
        # size 35+4+6, high max(102, 103), low min(99.5, 98), 3+2 trades; price and open kept
        at(0): (99.5, 45, 100.0, 103.0, 98.0, 5),
        # one trade (101.0) and a late one: open the stored price, high 101.0, low 100.8
        at(1000): (101.0, 9, 101.0, 101.0, 100.8, 2),
        at(30_000): (100.5, 3, None, None, None, None),
    }
    assert ticks("MSFT") == {at(0): (50.0, 3, 50.0, 50.0, 49.0, 2)}
    # Volume 45+10+2, trades 5+2+1, high 103, low 98; open 100.0 and close 100.5 as they were.
    assert bars("AAPL") == {at(0): (100.0, 103.0, 98.0, 100.5, 57, 8)}
    assert bars("MSFT") == {at(0): (50.0, 50.0, 49.0, 50.0, 3, 2)}


def test_a_late_trade_of_a_slot_without_a_tick_is_stored_as_a_history_tick(stored, alice):
    AlertRuleFactory(owner=alice, symbol_id="AAPL", condition="price_below", threshold=98.0,
                     frequency="every_time")  # fmt: skip
    hot_before = hot_states(["AAPL"])["AAPL"]

    result = late.fold(
        trades(
            ("AAPL", 600, 97.0, 8),  # slot 1: AAPL traded in slots 0 and 2 only
            ("AAPL", 700, 96.5, 1),
            ("AAPL", 90_000, 104.0, 1),  # the next minute, which has no bar yet
        )
    )  # fmt: skip

    assert (result.folded, result.new_ticks) == (0, 2)
    assert ticks("AAPL") == {
        at(0): (99.5, 35, 100.0, 102.0, 99.5, 3),
        at(500): (96.5, 9, 97.0, 97.0, 96.5, 2),  # 97.0 then 96.5; 8+1
        at(1000): (101.0, 7, None, None, None, None),
        at(30_000): (100.5, 3, None, None, None, None),
        at(90_000): (104.0, 1, None, None, None, None),
    }
    assert bars("AAPL") == {
        # 45+9 shares, 5+2 trades, low 96.5; the close is still the minute's newest tick's
        # (100.5 at 30 s), not the late one's, and the open its first's.
        at(0): (100.0, 102.0, 96.5, 100.5, 54, 7),
        at(60_000): (104.0, 104.0, 104.0, 104.0, 1, 1),
    }
    # History: no alert fired on 96.5 < 98, and the live price is the one it was.
    assert not AlertEvent.objects.exists()
    assert hot_states(["AAPL"])["AAPL"] == hot_before


def test_the_longer_bars_already_rolled_up_take_the_late_trades_in(stored):
    rollup_range(interval="5m", start=T0, end=T0 + timedelta(minutes=5))
    assert bars("AAPL", "5m") == {at(0): (100.0, 102.0, 99.5, 100.5, 45, 5)}

    late.fold(trades(("AAPL", 400, 98.0, 6), ("AAPL", 600, 103.5, 2)))

    # One trade folded into slot 0, one a new tick in slot 1: 45+6+2 shares, 5+2 trades.
    assert bars("AAPL", "5m") == {at(0): (100.0, 103.5, 98.0, 100.5, 53, 7)}


def test_a_fold_that_fails_counts_nothing_so_trying_it_again_counts_once(stored):
    batch = TickBatch.from_rows([("AAPL", at(0), 98.0, 6), ("ZZZZ", at(0), 10.0, 1)])
    with pytest.raises(BatchError, match="ZZZZ"):  # an unknown symbol, after AAPL's fold
        late.fold(batch)
    assert ticks("AAPL")[at(0)] == (99.5, 35, 100.0, 102.0, 99.5, 3)
    assert bars("AAPL")[at(0)] == (100.0, 102.0, 99.5, 100.5, 45, 5)

    late.fold(TickBatch.from_rows([("AAPL", at(0), 98.0, 6)]))
    assert ticks("AAPL")[at(0)] == (99.5, 41, 100.0, 102.0, 98.0, 4)
    assert bars("AAPL")[at(0)] == (100.0, 102.0, 98.0, 100.5, 51, 6)


def test_the_same_batch_folded_twice_counts_twice(stored):
    """Not idempotent, by design: a late trade carries no id to the database, so `fold`
    cannot tell a repeat from a second trade of the same size and price. The connector
    folds each trade once (the conflator drops repeated ids before, and hands each late
    trade out once)."""
    batch = trades(("AAPL", 400, 98.0, 6), ("AAPL", 600, 97.0, 8))
    assert (late.fold(batch).folded, late.fold(batch).folded) == (1, 2)
    assert ticks("AAPL")[at(0)] == (99.5, 35 + 6 + 6, 100.0, 102.0, 98.0, 3 + 1 + 1)
    # Slot 1 was new the first time (one trade) and folded into itself the second.
    assert ticks("AAPL")[at(500)] == (97.0, 16, 97.0, 97.0, 97.0, 2)
    assert bars("AAPL")[at(0)] == (100.0, 102.0, 97.0, 100.5, 45 + 6 + 8 + 6 + 8, 5 + 2 + 2)
