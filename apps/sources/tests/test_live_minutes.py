"""Trades lost without a disconnection: the vendor's minute bar holds more volume than the
trades the stream delivered, and the connector reads that minute again from the vendor's
trade history (apps/sources/live/minutes.py). Against the loopback Alpaca server
(apps/testing/alpaca.py), whose protocol alpaca-py's own client is proven to speak."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from apps.ingest.pipeline import TickBatch, ingest
from apps.market.models import Bar, Source, Symbol, Tick
from apps.testing.alpaca import AlpacaServer
from apps.testing.sources import RunningConnector
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

KEY, SECRET = "AKMINUTES", "minutes-secret"


def test_a_minute_whose_bar_holds_more_than_the_stream_sent_is_read_again(fresh_state, monkeypatch):
    monkeypatch.setenv("MINUTES_KEY", KEY)
    monkeypatch.setenv("MINUTES_SECRET", SECRET)
    now = datetime.now(UTC)
    # A tick of an earlier run 130 s ago: this run resumes from it, so the minutes after
    # it are wholly this run's, and checked (for 4 minutes, while their trade ids are
    # known); the trades sit in the first of them, all in the past.
    earlier = now - timedelta(seconds=130)
    minute = earlier.replace(second=0, microsecond=0) + timedelta(minutes=1)
    a, b, c = (
        {"S": "AAPL", "i": 1, "x": "V", "p": 100.0, "s": 10, "t": minute + timedelta(seconds=5)},
        {"S": "AAPL", "i": 2, "x": "V", "p": 103.0, "s": 25, "t": minute + timedelta(seconds=20)},
        {"S": "AAPL", "i": 3, "x": "V", "p": 101.0, "s": 40, "t": minute + timedelta(seconds=40)},
    )  # fmt: skip
    vendor_bar = {"S": "AAPL", "t": minute, "o": 100.0, "h": 103.0, "l": 100.0, "c": 101.0,
                  "v": 75, "n": 3, "vw": 101.2}  # fmt: skip

    with AlpacaServer(key=KEY, secret=SECRET) as server:
        source = Source.objects.create(
            name="alpaca", kind=Source.ALPACA, url=server.stream_url("iex"),
            rest_url=server.rest_url, key_env="MINUTES_KEY",
            secret_env="MINUTES_SECRET",  # noqa: S106 (the variable's name, not a secret)
        )  # fmt: skip
        Symbol.objects.create(ticker="AAPL", name="Apple", exchange="NASDAQ", source=source,
                              start_price=100.0)  # fmt: skip
        ingest(TickBatch.from_rows([("AAPL", earlier, 99.0, 5)]), live=False)

        with RunningConnector(source, ["AAPL"]) as running:
            server.wait_subscribed(trades=["AAPL"], bars=["AAPL"])
            wait_for(lambda: running.state.last_gap, timeout=30, what="the start's gap filled")
            assert running.state.last_gap["trades"] == 0  # the history had nothing yet

            server.send_trades([a, c])  # b never comes over the stream
            wait_for(lambda: Tick.objects.filter(ts__gte=minute).count() == 2, timeout=30,
                     what="the two streamed trades stored")  # fmt: skip
            server.load_trades("AAPL", [a, b, c])  # the vendor's history has all three
            server.send_bars([vendor_bar])

            def refilled() -> bool:
                gap = running.state.last_gap or {}
                return bool(gap.get("trades")) and running.state.held == 0

            wait_for(refilled, timeout=30, what="the minute read again")
            # The same bar again: the minute now adds up, so it is not read a third time.
            server.send_bars([vendor_bar])
            server.send_trades([{**c, "i": 4, "t": minute + timedelta(seconds=61)}])
            wait_for(lambda: Tick.objects.filter(ts__gte=minute).count() == 4, timeout=30,
                     what="a later trade stored after the second bar")  # fmt: skip
            time.sleep(3)  # longer than a refill waits to gather a minute's bars
            report = running.report()

    assert report["short_minutes"] == 1
    assert report["last_gap"]["trades"] == 1  # b; a and c were known by their ids
    assert report["duplicates"] == 2
    ticks = list(Tick.objects.filter(ts__gte=minute, ts__lt=minute + timedelta(minutes=1))
                 .order_by("ts").values_list("ts", "price", "size"))  # fmt: skip
    assert ticks == [
        (a["t"], 100.0, 10),
        (b["t"], 103.0, 25),  # stored late, as a tick of its own slot
        (c["t"], 101.0, 40),
    ]
    stored = Bar.objects.get(symbol_id="AAPL", interval="1m", ts=minute)
    assert (stored.open, stored.high, stored.low, stored.close, stored.volume, stored.trades) == (
        100.0, 103.0, 100.0, 101.0, 75, 3,
    )  # fmt: skip
