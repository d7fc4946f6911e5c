"""The vendor's two official Python clients, unchanged but for the host, against a live
Daphne (docs/polygon.md). Every expected value comes from the /api/v1 door or from what the
test stored, never from the gateway's own code."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import requests
import talib
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

DAYS = 2  # about 2,900 minute bars: /api/v1 returns them in one answer (at most 5,000)


def ns_of(iso: str) -> int:
    """Unix ns of an /api/v1 time ("...Z"), exactly."""
    delta = datetime.fromisoformat(iso) - datetime(1970, 1, 1, tzinfo=UTC)
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000


@pytest.fixture(params=["massive", "polygon"])
def vendor(request):
    """The client package: `massive` (current) or `polygon` (polygon-api-client, frozen)."""
    return importlib.import_module(request.param), importlib.import_module(
        f"{request.param}.exceptions"
    )


@pytest.fixture
def live(market, redis_client, processes, monkeypatch):
    """A live Daphne with MARKETFLUX_PUBLIC_READ=0 over AAPL's stored history: two days of
    backfilled minute bars and 40 ticks. Yields (url, key, /api/v1 getter)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    store.forget()
    now = datetime.now(UTC).replace(microsecond=0)
    ingest(TickBatch.from_rows(
        [("AAPL", now - timedelta(seconds=15 * (39 - i)), 200.0 + (i % 7) / 4, 50 + i,
          199.99 + (i % 7) / 4, 200.02 + (i % 7) / 4, 100 * (1 + i % 4), 100 * (1 + i % 3))
         for i in range(40)]
    ))  # fmt: skip
    call_command("backfill", days=DAYS, symbols="AAPL")
    key = Token.objects.create(user=get_user_model().objects.create_user("quant")).key
    url = processes.daphne(MARKETFLUX_PUBLIC_READ="0", MARKETFLUX_THROTTLE_USER="1000000/min")

    def ours(path: str, **params) -> dict:
        answer = requests.get(f"{url}/api/v1/{path}", params=params, timeout=30,
                              headers={"Authorization": f"Token {key}"})  # fmt: skip
        assert answer.status_code == 200, answer.text[:300]
        return answer.json()

    yield url, key, ours
    store.forget()


@pytest.mark.parametrize(("timespan", "interval", "limit"),
                         [("minute", "1m", 500), ("hour", "1h", 7), ("day", "1d", 1)])  # fmt: skip
def test_list_aggs_follows_every_page_and_equals_our_bars(live, vendor, timespan, interval, limit):
    url, key, ours = live
    package, _ = vendor
    client = package.RESTClient(api_key=key, base=url)
    bars = ours("stocks/AAPL/bars", interval=interval, limit=5000)["results"]
    assert len(bars) > limit  # so the client had to follow next_url
    first = datetime.fromisoformat(bars[0]["ts"]).date()
    last = datetime.now(UTC).date() + timedelta(days=1)
    got = list(client.list_aggs("AAPL", 1, timespan, first.isoformat(), last.isoformat(),
                                limit=limit))  # fmt: skip
    assert [(a.timestamp * 1_000_000, a.open, a.high, a.low, a.close, a.volume, a.transactions)
            for a in got] == [
        (ns_of(b["ts"]), b["open"], b["high"], b["low"], b["close"], b["volume"], b["trades"])
        for b in bars
    ]  # fmt: skip
    newest_first = list(client.list_aggs("AAPL", 1, timespan, first, last, sort="desc",
                                         limit=limit))  # fmt: skip
    assert [a.timestamp for a in newest_first] == [a.timestamp for a in reversed(got)]


def test_day_aggregates_prev_close_grouped_and_last_trade(live, vendor):
    url, key, ours = live
    package, _ = vendor
    client = package.RESTClient(api_key=key, base=url)
    days = ours("stocks/AAPL/bars", interval="1d", limit=10)["results"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    day = next(b for b in days if datetime.fromisoformat(b["ts"]).date() == yesterday)

    (prev,) = client.get_previous_close_agg("AAPL")
    assert (prev.ticker, prev.timestamp * 1_000_000, prev.open, prev.high, prev.low,
            prev.close, prev.volume) == ("AAPL", ns_of(day["ts"]), day["open"], day["high"],
                                         day["low"], day["close"], day["volume"])  # fmt: skip

    grouped = client.get_grouped_daily_aggs(yesterday.isoformat())
    assert [(g.ticker, g.open, g.close, g.volume) for g in grouped] == [
        ("AAPL", day["open"], day["close"], day["volume"])
    ]  # only AAPL has history

    price = ours("stocks/AAPL/price")
    newest = ours("stocks/AAPL/history", limit=1)["results"][-1]
    trade = client.get_last_trade("AAPL")
    assert (trade.ticker, trade.price, trade.size, trade.sip_timestamp) == (
        "AAPL", price["price"], newest["size"], ns_of(price["ts"])
    )  # fmt: skip
    assert trade.participant_timestamp == trade.sip_timestamp

    quote = client.get_last_quote("AAPL")
    assert (quote.ticker, quote.bid_price, quote.ask_price, quote.sip_timestamp) == (
        "AAPL", newest["bid"], newest["ask"], ns_of(newest["ts"])
    )  # fmt: skip
    assert (quote.bid_size, quote.ask_size) == (newest["bid_size"] // 100,
                                                newest["ask_size"] // 100)  # fmt: skip


def test_list_trades_pages_equal_our_history(live, vendor):
    url, key, ours = live
    package, _ = vendor
    client = package.RESTClient(api_key=key, base=url)
    history = ours("stocks/AAPL/history", limit=5000)["results"]
    expected = [(ns_of(t["ts"]), t["price"], t["size"]) for t in history]
    assert len(expected) == 40
    trades = list(client.list_trades("AAPL", order="asc", limit=6))
    assert [(t.sip_timestamp, t.price, t.size) for t in trades] == expected
    assert len({t.id for t in trades}) == len(trades)
    newest_first = list(client.list_trades("AAPL", limit=9))  # the vendor's default order
    assert [t.sip_timestamp for t in newest_first] == [e[0] for e in reversed(expected)]
    window = {"timestamp_gte": expected[10][0], "timestamp_lt": expected[20][0]}
    middle = list(client.list_trades("AAPL", order="asc", limit=3, **window))
    assert [(t.sip_timestamp, t.price, t.size) for t in middle] == expected[10:20]


def test_list_aggs_of_seconds_follows_pages_of_time_and_equals_our_ticks(live, vendor):
    url, key, ours = live
    package, _ = vendor
    client = package.RESTClient(api_key=key, base=url)
    history = ours("stocks/AAPL/history", limit=5000)["results"]  # a tick every 15 s
    first, last = (ns_of(history[i]["ts"]) // 1_000_000 for i in (0, -1))
    # limit=100: each page spans 100 seconds, so the client follows pages with 6 or 7
    # ticks and, here and there, pages of none.
    got = list(client.list_aggs("AAPL", 1, "second", first, last, limit=100))
    assert [(a.timestamp, a.open, a.high, a.low, a.close, a.volume, a.transactions)
            for a in got] == [
        (ns_of(t["ts"]) // 1_000_000 // 1000 * 1000, t["price"], t["price"], t["price"],
         t["price"], t["size"], 1) for t in history
    ]  # fmt: skip


def test_tickers_and_details_are_our_symbols(live, vendor):
    url, key, ours = live
    package, _ = vendor
    client = package.RESTClient(api_key=key, base=url)
    stocks = ours("stocks")["results"]
    tickers = list(client.list_tickers(limit=2))  # the client pages 2 at a time
    assert [(t.ticker, t.name, t.active) for t in tickers] == [
        (s["symbol"], s["name"], s["active"]) for s in stocks
    ]
    assert [t.ticker for t in client.list_tickers(search="tesla")] == ["TSLA"]
    details = client.get_ticker_details("AAPL")
    apple = next(s for s in stocks if s["symbol"] == "AAPL")
    assert (details.ticker, details.name, details.market) == ("AAPL", apple["name"], "stocks")


def test_a_bad_key_and_an_unknown_ticker_are_bad_responses(live, vendor):
    url, key, _ = live
    package, exceptions = vendor
    stranger = package.RESTClient(api_key="not-a-key", base=url)
    with pytest.raises(exceptions.BadResponse, match="NOT_AUTHORIZED"):
        stranger.get_last_trade("AAPL")
    with pytest.raises(exceptions.BadResponse, match="NOT_AUTHORIZED"):
        list(stranger.list_aggs("AAPL", 1, "day", "2020-01-01", "2199-01-01"))
    client = package.RESTClient(api_key=key, base=url)
    with pytest.raises(exceptions.BadResponse, match="NOT_FOUND"):
        client.get_ticker_details("NOPE")
    with pytest.raises(exceptions.BadResponse, match="NOT_FOUND"):
        list(client.list_aggs("NOPE", 1, "day", "2020-01-01", "2199-01-01"))
    with pytest.raises(exceptions.BadResponse, match="timespan"):
        list(client.list_aggs("AAPL", 1, "fortnight", "2020-01-01", "2199-01-01"))


def test_snapshots_parse_and_equal_our_price_and_bars(live, vendor):
    url, key, ours = live
    package, _ = vendor
    client = package.RESTClient(api_key=key, base=url)
    price = ours("stocks/AAPL/price")
    newest = ours("stocks/AAPL/history", limit=1)["results"][-1]
    days = ours("stocks/AAPL/bars", interval="1d", limit=10)["results"]
    minute = ours("stocks/AAPL/bars", interval="1m", limit=1)["results"][-1]
    today = datetime.fromisoformat(price["ts"]).date()
    (day,) = [b for b in days if datetime.fromisoformat(b["ts"]).date() == today]
    prev = [b for b in days if datetime.fromisoformat(b["ts"]).date() < today][-1]

    def ohlcv(bar: dict) -> tuple:
        return (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"])

    one = client.get_snapshot_ticker("stocks", "AAPL")
    everyone = client.get_snapshot_all("stocks")  # the client sends include_otc=false
    named = client.get_snapshot_all("stocks", tickers=["MSFT", "AAPL"])
    assert [s.ticker for s in everyone] == [s["symbol"] for s in ours("stocks")["results"]]
    assert [s.ticker for s in named] == ["AAPL", "MSFT"]
    for snap in (one, everyone[0], named[0]):
        assert snap.ticker == "AAPL"
        trade = snap.last_trade
        assert (trade.ticker, trade.price, trade.size, trade.sip_timestamp) == (
            "AAPL", price["price"], newest["size"], ns_of(price["ts"])
        )  # fmt: skip
        assert snap.updated == ns_of(price["ts"])
        assert (snap.day.open, snap.day.high, snap.day.low, snap.day.close,
                snap.day.volume) == ohlcv(day)  # fmt: skip
        assert snap.prev_day.timestamp * 1_000_000 == ns_of(prev["ts"])
        assert (snap.prev_day.open, snap.prev_day.high, snap.prev_day.low, snap.prev_day.close,
                snap.prev_day.volume) == ohlcv(prev)  # fmt: skip
        assert snap.min.timestamp * 1_000_000 == ns_of(minute["ts"])
        assert (snap.min.open, snap.min.high, snap.min.low, snap.min.close,
                snap.min.volume) == ohlcv(minute)  # fmt: skip
        assert snap.min.accumulated_volume == day["volume"]
        assert snap.todays_change == price["price"] - prev["close"]
        assert snap.todays_change_percent == pytest.approx(
            (price["price"] - prev["close"]) / prev["close"] * 100, rel=1e-12
        )
        quote = snap.last_quote
        assert (quote.bid_price, quote.ask_price, quote.sip_timestamp) == (
            newest["bid"], newest["ask"], ns_of(newest["ts"])
        )  # fmt: skip
    quiet = named[1]  # MSFT: no tick and no bar, so every part is left out
    assert (quiet.day, quiet.min, quiet.prev_day, quiet.last_trade, quiet.last_quote,
            quiet.updated) == (None, None, None, None, None, None)  # fmt: skip


def _talib(method: str, x: np.ndarray, params: dict) -> list[tuple[float, ...]]:
    if method == "get_macd":
        columns = talib.MACD(x, params["short_window"], params["long_window"],
                             params["signal_window"])  # fmt: skip
    else:
        columns = (getattr(talib, method[4:].upper())(x, params.get("window", 14)),)
    return list(zip(*(c.tolist() for c in columns), strict=True))


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("get_sma", {"window": 20}),
        ("get_ema", {"window": 12, "series_type": "high"}),
        ("get_rsi", {}),  # the vendor's default window, 14
        ("get_macd", {"short_window": 12, "long_window": 26, "signal_window": 9}),
    ],
)
def test_indicators_equal_talib_on_our_bars(live, vendor, method, params):
    url, key, ours = live
    package, _ = vendor
    client = package.RESTClient(api_key=key, base=url)
    bars = ours("stocks/AAPL/bars", interval="1m", limit=5000)["results"]
    x = np.array([b[params.get("series_type", "close")] for b in bars])
    expected = [(ns_of(b["ts"]) // 1_000_000, v)
                for b, v in zip(bars, _talib(method, x, params), strict=True)
                if not np.isnan(v[0])]  # fmt: skip

    def values(answer) -> list[tuple[int, tuple[float, ...]]]:
        return [(v.timestamp, (v.value, v.signal, v.histogram) if method == "get_macd"
                 else (v.value,)) for v in answer.values]  # fmt: skip

    def close(got: list, want: list) -> bool:
        assert [t for t, _ in got] == [t for t, _ in want]
        return all(abs(a - b) <= 1e-9 for (_, g), (_, w) in zip(got, want, strict=True)
                   for a, b in zip(g, w, strict=True))  # fmt: skip

    newest = getattr(client, method)("AAPL", timespan="minute", limit=100, **params)
    assert close(values(newest), expected[-100:][::-1])  # newest first, the vendor's default
    assert newest.underlying.url.startswith(f"{url}/v2/aggs/ticker/AAPL/range/1/minute/")
    # A window by datetime (the clients send it as ns), oldest first, with the aggregates.
    since = datetime.fromtimestamp(expected[500][0] / 1000, UTC)
    window = getattr(client, method)(
        "AAPL", timespan="minute", timestamp_gte=since, order="asc", limit=40,
        expand_underlying=True, **params,
    )  # fmt: skip
    assert close(values(window), expected[500:540])
    used = {a.timestamp: a for a in window.underlying.aggregates}
    by_ms = {ns_of(b["ts"]) // 1_000_000: b for b in bars}
    assert set(used) <= set(by_ms)
    assert all((a.open, a.high, a.low, a.close, a.volume) ==
               tuple(by_ms[t][k] for k in ("open", "high", "low", "close", "volume"))
               for t, a in used.items())  # fmt: skip
    assert {t for t, _ in expected[500:540]} <= set(used)
