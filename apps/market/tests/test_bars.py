"""Longer bars from 1-minute bars on plain PostgreSQL (date_bin), open bucket included.

Every test runs three times: before any roll-up, with the closed buckets rolled up to
01:00, and with everything rolled up; a user must not be able to tell which.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.market.models import Bar
from apps.market.rollup import ROLLUP_INTERVALS, rollup_closed_buckets, rollup_range
from apps.market.selectors import bars_for_range

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 2, tzinfo=UTC)


def minute_bar(symbol, minute: int, o, h, low, c, v, n=1):
    return Bar(symbol=symbol, interval="1m", ts=DAY + timedelta(minutes=minute),
               open=o, high=h, low=low, close=c, volume=v, trades=n)  # fmt: skip


@pytest.fixture(params=["not rolled up", "rolled up to 01:00", "all rolled up"])
def history(market, request):
    aapl = market[0]
    Bar.objects.bulk_create(
        [
            minute_bar(aapl, 0, 10, 12, 9, 11, 100),  # 00:00
            minute_bar(aapl, 3, 11, 15, 10, 14, 200),  # 00:03
            minute_bar(aapl, 5, 14, 14, 8, 9, 300),  # 00:05, next 5m bucket
            minute_bar(aapl, 61, 9, 10, 7, 8, 400),  # 01:01
            minute_bar(aapl, 24 * 60 + 5, 8, 8, 8, 8, 500),  # next day 00:05
        ]
    )
    if request.param != "not rolled up":
        upto = DAY + timedelta(hours=1 if request.param == "rolled up to 01:00" else 72)
        for interval in ROLLUP_INTERVALS:
            rollup_range(interval=interval, start=DAY - timedelta(days=1), end=upto)
    return aapl


def candles(**kwargs):
    return [
        (c.ts, c.open, c.high, c.low, c.close, c.volume, c.trades)
        for c in bars_for_range(symbol="AAPL", **kwargs)
    ]


def test_five_minute_bars(history):
    got = candles(interval="5m", limit=10, start=DAY, end=DAY + timedelta(hours=2))
    assert got == [
        (DAY, 10, 15, 9, 14, 300, 2),
        (DAY + timedelta(minutes=5), 14, 14, 8, 9, 300, 1),
        (DAY + timedelta(minutes=60), 9, 10, 7, 8, 400, 1),
    ]


def test_hour_and_day_bars_start_on_the_hour_and_at_midnight_utc(history):
    hours = candles(interval="1h", limit=10, start=DAY, end=DAY + timedelta(days=2))
    assert [h[0] for h in hours] == [DAY, DAY + timedelta(hours=1), DAY + timedelta(days=1)]
    assert hours[0][1:] == (10, 15, 8, 9, 600, 3)
    days = candles(interval="1d", limit=10, start=DAY, end=DAY + timedelta(days=2))
    assert days == [(DAY, 10, 15, 7, 8, 1000, 4), (DAY + timedelta(days=1), 8, 8, 8, 8, 500, 1)]


def test_limit_keeps_the_newest_buckets_oldest_first(history):
    got = candles(interval="1m", limit=2, start=DAY, end=DAY + timedelta(days=2))
    assert [g[0] for g in got] == [DAY + timedelta(minutes=61), DAY + timedelta(days=1, minutes=5)]


def test_a_start_inside_a_bucket_begins_with_the_next_whole_bucket(history):
    got = candles(interval="1h", limit=5, start=DAY + timedelta(minutes=30),
                  end=DAY + timedelta(hours=3))  # fmt: skip
    assert got == [(DAY + timedelta(hours=1), 9, 10, 7, 8, 400, 1)]


def stored(interval: str) -> list[datetime]:
    return list(
        Bar.objects.filter(symbol_id="AAPL", interval=interval)
        .order_by("ts")
        .values_list("ts", flat=True)
    )


def test_the_periodic_roll_up_stores_buckets_only_once_they_have_settled(market, redis_client):
    aapl = market[0]
    Bar.objects.bulk_create([minute_bar(aapl, m, 10, 11, 9, 10, 100) for m in (0, 30, 59, 60)])
    rollup_closed_buckets(now=DAY + timedelta(hours=1, seconds=10))  # 00:00-01:00 just closed
    assert stored("1h") == []
    assert stored("5m") == [DAY, DAY + timedelta(minutes=30)]  # 00:55-01:00 not settled
    rollup_closed_buckets(now=DAY + timedelta(hours=1, seconds=31))
    assert stored("1h") == [DAY]
    assert stored("5m") == [DAY, DAY + timedelta(minutes=30), DAY + timedelta(minutes=55)]
    hour = Bar.objects.get(symbol=aapl, interval="1h")
    assert (hour.volume, hour.trades) == (300, 3)


def test_the_open_bucket_keeps_moving_after_a_roll_up(market, redis_client):
    aapl = market[0]
    Bar.objects.bulk_create([minute_bar(aapl, m, 10, 11, 9, 10, 100) for m in (0, 61)])
    rollup_closed_buckets(now=DAY + timedelta(hours=1, minutes=2))
    Bar.objects.bulk_create([minute_bar(aapl, 62, 10, 20, 9, 19, 50)])  # a tick at 01:02
    got = candles(interval="1h", limit=5, start=DAY, end=DAY + timedelta(hours=2))
    assert got == [(DAY, 10, 11, 9, 10, 100, 1), (DAY + timedelta(hours=1), 10, 20, 9, 19, 150, 2)]


def test_a_lost_watermark_resumes_after_the_last_stored_bucket(market, redis_client):
    aapl = market[0]
    Bar.objects.bulk_create([minute_bar(aapl, m, 10, 11, 9, 10, 100) for m in (0, 70, 130)])
    rollup_closed_buckets(now=DAY + timedelta(hours=1, minutes=1))
    redis_client.flushdb()
    Bar.objects.filter(symbol=aapl, interval="1m", ts=DAY).update(volume=999)  # already stored
    written = rollup_closed_buckets(now=DAY + timedelta(hours=3, minutes=1))
    assert written["1h"] == 2  # 01:00 and 02:00, not 00:00 again
    assert stored("1h") == [DAY + timedelta(hours=h) for h in range(3)]
    assert Bar.objects.get(symbol=aapl, interval="1h", ts=DAY).volume == 100
