"""pipeline.ingest: ticks stored once, 1-minute bars rolled up exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.ingest.pipeline import BatchError, Slots, TickBatch, ingest
from apps.market.models import Bar, Tick

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def bars(symbol: str) -> list[tuple]:
    return list(
        Bar.objects.filter(symbol_id=symbol, interval="1m")
        .order_by("ts")
        .values_list("ts", "open", "high", "low", "close", "volume", "trades")
    )


pytestmark = pytest.mark.django_db


def test_ticks_roll_into_hand_checked_minute_bars(market):
    ingest(
        TickBatch.from_rows(
            [
                ("AAPL", at(0), 100.0, 10),
                ("AAPL", at(20), 105.0, 20),
                ("AAPL", at(40), 95.0, 30),
                ("AAPL", at(59.5), 101.0, 40),
                ("AAPL", at(60), 102.0, 50),
                ("AAPL", at(150), 99.0, 60),
            ]
        )
    )
    assert bars("AAPL") == [
        (at(0), 100.0, 105.0, 95.0, 101.0, 100, 4),
        (at(60), 102.0, 102.0, 102.0, 102.0, 50, 1),
        (at(120), 99.0, 99.0, 99.0, 99.0, 60, 1),
    ]


def test_a_minute_spread_over_several_batches_makes_one_bar(market):
    ingest(TickBatch.from_rows([("MSFT", at(1), 50.0, 1), ("MSFT", at(2), 52.0, 2)]))
    ingest(TickBatch.from_rows([("MSFT", at(3), 49.0, 3)]))
    ingest(TickBatch.from_rows([("MSFT", at(4), 51.0, 4)]))
    assert bars("MSFT") == [(at(0), 50.0, 52.0, 49.0, 51.0, 10, 4)]


def test_replaying_a_batch_changes_nothing(market):
    batch = TickBatch.from_rows(
        [
            (s.ticker, at(i * 0.5), 100.0 + i + j, 100)
            for i in range(4)
            for j, s in enumerate(market)
        ]
    )
    first = ingest(batch)
    snapshot = (list(Tick.objects.values_list()), list(Bar.objects.values_list()))
    again = ingest(batch)
    assert first.stored == 20
    assert again.stored == 0
    assert (list(Tick.objects.values_list()), list(Bar.objects.values_list())) == snapshot


def test_a_partly_stored_batch_adds_only_the_missing_ticks_to_the_bars(market):
    ingest(TickBatch.from_rows([("AAPL", at(0), 100.0, 10)]))
    result = ingest(TickBatch.from_rows([("AAPL", at(0), 100.0, 10), ("AAPL", at(1), 110.0, 5)]))
    assert result.stored == 1
    assert [m["ts"] for m in result.messages] == ["2026-03-02T14:30:01Z"]
    assert bars("AAPL") == [(at(0), 100.0, 110.0, 100.0, 110.0, 15, 2)]


def test_rows_out_of_time_order_are_applied_in_time_order(market):
    ingest(TickBatch.from_rows([("AAPL", at(30), 3.0, 1), ("AAPL", at(10), 1.0, 1)]))
    assert bars("AAPL") == [(at(0), 1.0, 3.0, 1.0, 3.0, 2, 2)]


def test_a_tick_repeated_inside_one_batch_is_stored_once(market):
    result = ingest(TickBatch.from_rows([("AAPL", at(5), 3.0, 1), ("AAPL", at(5), 3.0, 1)]))
    assert result.stored == 1
    assert bars("AAPL")[0][5:] == (1, 1)


def test_batches_inside_a_callers_transaction_store_only_their_own_ticks(market):
    """Nothing commits between these batches (the test's transaction holds them all), so
    the staging tables are never emptied by a commit; the second batch must not bring back
    the first one's tick, which was deleted in between."""
    ingest(TickBatch.from_rows([("AAPL", at(0), 10.0, 1), ("MSFT", at(0), 20.0, 2)]))
    Tick.objects.all().delete()
    result = ingest(TickBatch.from_rows([("AAPL", at(1), 11.0, 3), ("MSFT", at(1), 21.0, 4)]))
    assert result.stored == 2
    assert sorted(Tick.objects.values_list("symbol_id", "ts")) == [("AAPL", at(1)), ("MSFT", at(1))]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("AAPL", at(0), float("nan"), 1), "price"),
        (("AAPL", at(0), -1.0, 1), "price"),
        (("AAPL", at(0), 0.0, 1), "price"),
        (("AAPL", at(0), 10.0, 0), "size"),
        (("AAPL", datetime(2026, 1, 1), 10.0, 1), "timezone"),  # noqa: DTZ001
        (("AAPL", at(0), 10.0, 1, 9.99, None, 100, 100), "or none of them"),
        (("AAPL", at(0), 10.0, 1, 0.0, 10.01, 100, 100), "bid and ask must be positive"),
        (("AAPL", at(0), 10.0, 1, 9.99, float("inf"), 100, 100), "bid and ask must be pos"),
        (("AAPL", at(0), 10.0, 1, 9.99, 10.01, 0, 100), "sizes must be positive integers"),
        (("AAPL", at(0), 10.0, 1, 9.99, 10.01, 100, 150.5), "sizes must be positive integ"),
    ],
)
def test_a_bad_row_rejects_the_whole_batch(market, row, message):
    good = ("MSFT", at(0), 10.0, 1)
    with pytest.raises(BatchError, match=message):
        ingest(TickBatch.from_rows([good, row]))
    assert not Tick.objects.exists()


def test_an_unknown_symbol_stores_nothing_of_its_batch(market):
    with pytest.raises(BatchError, match="unknown symbols: NOPE"):
        ingest(TickBatch.from_rows([("MSFT", at(0), 10.0, 1), ("NOPE", at(0), 10.0, 1)]))
    assert not Tick.objects.exists()
    assert not Bar.objects.exists()


def test_result_lists_the_new_ticks_in_time_order(market):
    prices = np.array([1.0, 2.0, 3.0])
    batch = TickBatch(symbols=["TSLA", "AAPL", "TSLA"], ts=[at(1), at(0), at(0)],
                      prices=prices, sizes=np.array([1, 1, 1]))  # fmt: skip
    result = ingest(batch)
    assert [(m["symbol"], m["ts"], m["price"]) for m in result.messages] == [
        ("AAPL", "2026-03-02T14:30:00Z", 2.0),
        ("TSLA", "2026-03-02T14:30:00Z", 3.0),
        ("TSLA", "2026-03-02T14:30:01Z", 1.0),
    ]


def test_quotes_are_stored_with_their_ticks_and_carried_by_the_messages(market):
    result = ingest(
        TickBatch.from_rows(
            [
                ("AAPL", at(0), 190.12, 37, 190.10, 190.13, 300, 500),
                ("MSFT", at(0), 410.0, 5),  # this source had no quote for MSFT
                ("AAPL", at(1), 190.15, 100, 190.14, 190.15, 200, 100),
            ]
        )
    )
    assert list(
        Tick.objects.order_by("ts", "symbol_id").values_list(
            "symbol_id", "price", "bid", "ask", "bid_size", "ask_size"
        )
    ) == [
        ("AAPL", 190.12, 190.10, 190.13, 300, 500),
        ("MSFT", 410.0, None, None, None, None),
        ("AAPL", 190.15, 190.14, 190.15, 200, 100),
    ]
    assert [(m["symbol"], m["bid"], m["ask"], m["bid_size"], m["ask_size"])
            for m in result.messages] == [
        ("AAPL", 190.10, 190.13, 300, 500),
        ("MSFT", None, None, None, None),
        ("AAPL", 190.14, 190.15, 200, 100),
    ]  # fmt: skip
    assert (result.states["AAPL"]["bid"], result.states["AAPL"]["ask_size"]) == (190.14, 100)


def test_a_replayed_batch_with_quotes_stores_them_once(market):
    rows = [("AAPL", at(0), 10.0, 1, 9.99, 10.01, 100, 200)]
    ingest(TickBatch.from_rows(rows))
    again = ingest(TickBatch.from_rows([*rows, ("AAPL", at(1), 10.02, 3, 10.01, 10.03, 400, 300)]))
    assert [m["ts"] for m in again.messages] == ["2026-03-02T14:30:01Z"]
    assert list(Tick.objects.order_by("ts").values_list("bid", "ask_size")) == [
        (9.99, 200), (10.01, 300)
    ]  # fmt: skip


def test_each_tick_message_carries_the_days_volume_through_it(market):
    midnight = datetime(2026, 3, 3, tzinfo=UTC)
    first = ingest(TickBatch.from_rows([("AAPL", midnight - timedelta(seconds=2), 10.0, 5)]))
    second = ingest(
        TickBatch.from_rows(
            [
                ("AAPL", midnight - timedelta(seconds=1), 10.0, 10),
                ("MSFT", midnight - timedelta(seconds=1), 20.0, 7),
                ("AAPL", midnight, 10.1, 20),  # a new UTC day starts over
                ("AAPL", midnight + timedelta(seconds=1), 10.2, 30),
            ]
        )
    )
    assert [m["volume"] for m in first.messages] == [5]
    assert [(m["symbol"], m["volume"]) for m in second.messages] == [
        ("AAPL", 15), ("MSFT", 7), ("AAPL", 20), ("AAPL", 50)
    ]  # fmt: skip
    assert second.states["AAPL"]["volume"] == 50


def _conflated(opens, highs, lows, trades, prices=(10.0,)) -> TickBatch:
    n = len(prices)
    return TickBatch(
        symbols=["AAPL"] * n, ts=[at(i) for i in range(n)], prices=np.array(prices),
        sizes=np.full(n, 5), slots=Slots(*(np.array(c, dtype=np.float64)
                                           for c in (opens, highs, lows, trades))),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("slot", "message"),
    [
        (([9.0], [11.0], [12.0], [3]), "low <= open, price <= high"),  # low above high
        (([9.0], [9.5], [8.0], [3]), "low <= open, price <= high"),  # the price above high
        (([9.0], [11.0], [0.0], [3]), "positive"),
        (([9.0], [11.0], [8.0], [0]), "trade count"),
        (([9.0], [11.0], [8.0], [2.5]), "trade count"),
        (([9.0], [np.nan], [8.0], [2]), "or none of them"),
    ],
)
def test_a_bad_slot_rejects_the_batch(market, slot, message):
    with pytest.raises(BatchError, match=message):
        ingest(_conflated(*slot))
    assert not Tick.objects.exists()


def test_conflated_ticks_make_bars_of_their_trades_not_of_their_last_prices(market):
    # Two slots of several trades each, and one tick of a single trade (NaN: no slot).
    ingest(_conflated([9.0, 10.0, np.nan], [11.0, 10.5, np.nan], [8.0, 9.5, np.nan],
                      [4, 2, np.nan], prices=(10.0, 9.8, 9.9)))  # fmt: skip
    assert bars("AAPL") == [(at(0), 9.0, 11.0, 8.0, 9.9, 15, 7)]
