"""The REST API of docs/contracts.md#rest-api, read like a program would, over the real pipeline.

Ticks go in through `pipeline.ingest`, so the database rows and the hot state in Redis are
the ones the live system has; every expected value is worked out here from the ticks fed in.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.indicators.models import IndicatorSnapshot
from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest
from apps.market.models import Symbol

pytestmark = pytest.mark.django_db

API = "/api/v1"
TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]
# A past UTC day; MIDNIGHT is the start of the next one.
MIDNIGHT = datetime(2026, 3, 3, tzinfo=UTC)

# Every indicator field (docs/contracts.md#indicators) and the prices it needs for a value.
WARM_UP = {
    "sma_20": 20,
    "ema_20": 20,
    "rsi_14": 15,
    "zscore_20": 20,
    "macd": 34,
    "macd_signal": 34,
    "macd_hist": 34,
    "bb_upper": 20,
    "bb_middle": 20,
    "bb_lower": 20,
}
INDICATOR_FIELDS = [*WARM_UP, "anomaly"]

SYMBOL_PATHS = ["price", "history", "indicators", "indicators/history", "bars"]
ALL_PATHS = ["stocks", "market/overview", *(f"stocks/AAPL/{p}" for p in SYMBOL_PATHS)]


@pytest.fixture(autouse=True)
def fresh_pipeline(redis_client):
    """Empty Redis and a pipeline process that has seen nothing yet."""
    store.forget()
    yield
    store.forget()


def feed(rows: list[tuple[str, datetime, float, int]]) -> None:
    ingest(TickBatch.from_rows(rows))


def get_json(client, path: str, status: int = 200, **params) -> dict:
    response = client.get(f"{API}/{path}", params)
    assert response.status_code == status, (path, params, response.content[:500])
    return response.json()


def utc(text: str) -> datetime:
    """A timestamp of an answer: ISO 8601, UTC, ending with Z."""
    assert text.endswith("Z"), text
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def session(rows, symbol: str) -> dict:
    """Where `symbol` stands after `rows`: its last price and its UTC day so far, its
    change against the previous day's last price (or, without one, today's open)."""
    mine = sorted((r for r in rows if r[0] == symbol), key=lambda r: r[1])
    last = mine[-1]
    today = [r for r in mine if r[1].astimezone(UTC).date() == last[1].astimezone(UTC).date()]
    yesterday = [r for r in mine if r[1].astimezone(UTC).date() == today[0][1].date()
                 - timedelta(days=1)]  # fmt: skip
    reference = yesterday[-1][2] if yesterday else today[0][2]
    return {
        "price": last[2],
        "ts": last[1],
        "change": last[2] - reference,
        "change_pct": (last[2] - reference) / reference * 100,
        "volume": sum(r[3] for r in today),
    }


def assert_session(answer: dict, expected: dict, ts_field: str = "ts") -> None:
    assert answer["price"] == expected["price"]
    assert utc(answer[ts_field]) == expected["ts"]
    assert answer["change"] == pytest.approx(expected["change"], rel=1e-12, abs=1e-12)
    assert answer["change_pct"] == pytest.approx(expected["change_pct"], rel=1e-12, abs=1e-12)
    if "volume" in answer:
        assert answer["volume"] == expected["volume"]
        assert type(answer["volume"]) is int


def walk(n: int, seed: int, start: float = 100.0) -> list[float]:
    rng = np.random.default_rng(seed)
    return (start * np.exp(np.cumsum(rng.normal(0, 0.003, n)))).tolist()


def across_midnight() -> list[tuple[str, datetime, float, int]]:
    """Ticks of every symbol from 23:59:58 on one UTC day to 00:00:03 on the next."""
    rows = []
    for k, ticker in enumerate(TICKERS):
        prices = walk(12, seed=k, start=50.0 + 40 * k)
        for i, price in enumerate(prices):
            rows.append((ticker, MIDNIGHT + timedelta(seconds=0.5 * (i - 4)), price, 10 + i + k))
    return rows


def candles(rows, symbol: str, bucket_of) -> list[dict]:
    """OHLCV per bucket of a symbol's ticks, oldest first, worked out from the ticks."""
    buckets: dict[datetime, list] = defaultdict(list)
    for ticker, ts, price, size in sorted(rows, key=lambda r: r[1]):
        if ticker == symbol:
            buckets[bucket_of(ts)].append((price, size))
    return [
        {
            "ts": start,
            "open": ticks[0][0],
            "high": max(p for p, _ in ticks),
            "low": min(p for p, _ in ticks),
            "close": ticks[-1][0],
            "volume": sum(s for _, s in ticks),
            "trades": len(ticks),
        }
        for start, ticks in sorted(buckets.items())
    ]


BUCKETS = {
    "1m": lambda ts: ts.replace(second=0, microsecond=0),
    "5m": lambda ts: ts.replace(minute=ts.minute - ts.minute % 5, second=0, microsecond=0),
    "15m": lambda ts: ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0),
    "1h": lambda ts: ts.replace(minute=0, second=0, microsecond=0),
    "1d": lambda ts: ts.replace(hour=0, minute=0, second=0, microsecond=0),
}


def answered_candles(body: dict) -> list[dict]:
    for c in body["results"]:  # JSON integers, as the schema says: 1830, never 1830.0
        assert type(c["volume"]) is int, c
        assert type(c["trades"]) is int, c
    return [{**c, "ts": utc(c["ts"])} for c in body["results"]]


def recent_rows(symbols: list[str], *, count: int, every_s: float) -> list[tuple]:
    """`count` ticks per symbol up to the current second, `every_s` seconds apart."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for k, ticker in enumerate(symbols):
        for i, price in enumerate(walk(count, seed=10 + k, start=100.0 + k)):
            rows.append((ticker, now - timedelta(seconds=every_s * (count - 1 - i)), price,
                         1 + (i * 7 + k) % 50))  # fmt: skip
    return rows


# The stock list.


def test_the_stock_list_names_every_symbol_with_null_prices_before_any_tick(client, market):
    body = get_json(client, "stocks")
    assert body["count"] == 5
    assert sorted(s["symbol"] for s in body["results"]) == TICKERS
    aapl = next(s for s in body["results"] if s["symbol"] == "AAPL")
    assert aapl["name"] == "Apple Inc."
    assert aapl["exchange"] == "NASDAQ"
    assert aapl["active"] is True
    for field in ("price", "change", "change_pct", "updated_at"):
        assert aapl[field] is None


def test_the_stock_list_shows_each_symbols_latest_price_and_day_change(client, market):
    rows = across_midnight()
    feed(rows)
    body = get_json(client, "stocks")
    assert sorted(s["symbol"] for s in body["results"]) == TICKERS
    for stock in body["results"]:
        assert_session(stock, session(rows, stock["symbol"]), ts_field="updated_at")


def test_the_stock_list_is_paginated(client, market):
    seen = []
    page = get_json(client, "stocks", page_size=2)
    pages = 1
    assert page["count"] == 5
    assert page["previous"] is None
    seen += [s["symbol"] for s in page["results"]]
    while page["next"]:
        response = client.get(page["next"])
        assert response.status_code == 200
        page = response.json()
        assert page["previous"] is not None
        seen += [s["symbol"] for s in page["results"]]
        pages += 1
    assert pages == 3
    assert sorted(seen) == TICKERS  # every symbol once
    last = get_json(client, "stocks", page_size=2, page=3)
    assert len(last["results"]) == 1
    assert last["next"] is None


@pytest.fixture
def wider_market(market):
    jpm = Symbol(ticker="JPM", name="JPMorgan Chase & Co.", exchange="NYSE",
                 sector="Financials", start_price=200.0)  # fmt: skip
    jpm.full_clean()
    jpm.save()
    Symbol.objects.filter(ticker="AMZN").update(active=False)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"active": "false"}, ["AMZN"]),
        ({"active": "true"}, ["AAPL", "GOOGL", "JPM", "MSFT", "TSLA"]),
        ({"exchange": "NYSE"}, ["JPM"]),
        ({"exchange": "NASDAQ"}, TICKERS),
        ({"sector": "Technology"}, ["AAPL", "MSFT"]),
        ({"sector": "Consumer Discretionary", "active": "true"}, ["TSLA"]),
        ({"search": "Alphabet"}, ["GOOGL"]),  # part of the name
        ({"search": "tesla"}, ["TSLA"]),  # any case
        ({"search": "MS"}, ["MSFT"]),  # ticker prefix
        ({"search": "nothing like it"}, []),
    ],
)
def test_the_stock_list_filters(client, wider_market, query, expected):
    body = get_json(client, "stocks", **query)
    assert sorted(s["symbol"] for s in body["results"]) == expected
    assert body["count"] == len(expected)


def test_a_bad_filter_value_is_a_400_naming_it(client, wider_market):
    body = get_json(client, "stocks", status=400, active="maybe")
    assert "active" in body


# /price


def test_price_is_null_before_the_first_tick(client, market):
    assert get_json(client, "stocks/MSFT/price") == {
        "symbol": "MSFT",
        "price": None,
        "ts": None,
        "change": None,
        "change_pct": None,
        "volume": None,
    }


def test_price_changes_against_the_previous_utc_days_close(client, market):
    rows = across_midnight()
    feed(rows)
    for ticker in TICKERS:
        body = get_json(client, f"stocks/{ticker}/price")
        assert body["symbol"] == ticker
        assert_session(body, session(rows, ticker))
    # The reference is the day before's last tick, not today's 00:00:00 open.
    last_yesterday = max((r for r in rows if r[0] == "AAPL" and r[1] < MIDNIGHT),
                         key=lambda r: r[1])  # fmt: skip
    body = get_json(client, "stocks/AAPL/price")
    assert body["change"] == pytest.approx(body["price"] - last_yesterday[2], rel=1e-12)


def test_price_follows_each_new_tick(client, market):
    t0 = MIDNIGHT + timedelta(hours=10)
    feed([("TSLA", t0, 250.0, 5)])
    assert get_json(client, "stocks/TSLA/price")["price"] == 250.0
    feed([("TSLA", t0 + timedelta(seconds=0.5), 251.25, 7)])
    body = get_json(client, "stocks/TSLA/price")
    assert body["price"] == 251.25
    assert utc(body["ts"]) == t0 + timedelta(seconds=0.5)
    assert body["ts"] == "2026-03-03T10:00:00.500000Z"
    assert body["change"] == 1.25
    assert body["change_pct"] == pytest.approx(0.5)
    assert body["volume"] == 12


def test_latest_answers_come_from_the_hot_state_not_the_database(client, market, redis_client):
    rows = across_midnight()
    feed(rows)
    redis_client.flushdb()  # the hot state is gone; the ticks are still in the database
    assert get_json(client, "stocks/GOOGL/price")["price"] is None
    assert get_json(client, "stocks/GOOGL/indicators")["price"] is None
    assert all(s["price"] is None for s in get_json(client, "stocks")["results"])
    assert all(s["price"] is None for s in get_json(client, "market/overview")["symbols"])
    assert get_json(client, "stocks/GOOGL/history")["count"] == 12

    # The next batch writes the hot state again, with the right day change and volume.
    later = MIDNIGHT + timedelta(seconds=10)
    rows.append(("GOOGL", later, 151.5, 33))
    feed([rows[-1]])
    body = get_json(client, "stocks/GOOGL/price")
    assert_session(body, session(rows, "GOOGL"))


def test_a_fresh_worker_after_losing_redis_still_knows_the_day(client, market, redis_client):
    rows = across_midnight()
    feed(rows)
    redis_client.flushdb()
    store.forget()  # a new worker process with nothing in Redis: it rebuilds from the database
    later = MIDNIGHT + timedelta(minutes=2, seconds=1)
    rows.append(("MSFT", later, 222.0, 40))
    feed([rows[-1]])
    assert_session(get_json(client, "stocks/MSFT/price"), session(rows, "MSFT"))


# /history


def test_history_is_the_last_ticks_oldest_first(client, market):
    t0 = MIDNIGHT + timedelta(hours=9)
    prices = walk(150, seed=3)
    rows = [("AMZN", t0 + timedelta(seconds=0.5 * i), p, 1 + i) for i, p in enumerate(prices)]
    rows += [("AAPL", t0 + timedelta(seconds=0.5 * i), 1.0 + i, 1) for i in range(10)]
    feed(rows)
    amzn = [r for r in rows if r[0] == "AMZN"]

    def expected(n: int) -> list[tuple]:
        return [(ts, price, size) for _, ts, price, size in amzn[-n:]]

    def answered(body: dict) -> list[tuple]:
        return [(utc(r["ts"]), r["price"], r["size"]) for r in body["results"]]

    default = get_json(client, "stocks/AMZN/history")
    assert default["symbol"] == "AMZN"
    assert default["count"] == 120 == len(default["results"])
    assert answered(default) == expected(120)
    five = get_json(client, "stocks/AMZN/history", limit=5)
    assert five["count"] == 5
    assert answered(five) == expected(5)
    assert five["results"][-1]["ts"] == "2026-03-03T09:01:14.500000Z"
    everything = get_json(client, "stocks/AMZN/history", limit=5000)
    assert answered(everything) == expected(150)


def test_history_of_a_symbol_without_ticks_is_empty(client, market):
    assert get_json(client, "stocks/MSFT/history") == {"symbol": "MSFT", "count": 0, "results": []}


# /indicators and /indicators/history


def stored_snapshot(symbol: str, ts: datetime) -> dict:
    snap = IndicatorSnapshot.objects.get(symbol_id=symbol, ts=ts)
    return {f: getattr(snap, f) for f in INDICATOR_FIELDS}


def test_indicators_before_the_first_tick_are_null_and_not_anomalous(client, market):
    Symbol.objects.filter(ticker="TSLA").update(anomaly_threshold=4.5)
    body = get_json(client, "stocks/TSLA/indicators")
    assert body["symbol"] == "TSLA"
    assert body["ts"] is None
    assert body["price"] is None
    assert body["anomaly_threshold"] == 4.5
    assert {f: body[f] for f in WARM_UP} == dict.fromkeys(WARM_UP)
    assert body["anomaly"] is False  # false until warm, a boolean (contracts.md#indicators)


def test_indicators_warm_up_as_designed_and_equal_the_stored_snapshot(client, market):
    Symbol.objects.filter(ticker="AAPL").update(anomaly_threshold=2.5)
    t0 = MIDNIGHT + timedelta(hours=12)
    prices = walk(40, seed=11, start=228.5)
    for n, price in enumerate(prices, start=1):
        ts = t0 + timedelta(seconds=0.5 * (n - 1))
        feed([("AAPL", ts, price, 100)])
        body = get_json(client, "stocks/AAPL/indicators")
        assert set(body) == {"symbol", "ts", "price", "anomaly_threshold", *INDICATOR_FIELDS}
        assert body["symbol"] == "AAPL"
        assert utc(body["ts"]) == ts
        assert body["price"] == price
        assert body["anomaly_threshold"] == 2.5
        for field, needed in WARM_UP.items():
            assert (body[field] is None) == (n < needed), (field, n)
        if n < 20:
            assert body["anomaly"] is False
        assert {f: body[f] for f in INDICATOR_FIELDS} == stored_snapshot("AAPL", ts)
    # And a value a user can check by hand: the 20-tick simple moving average.
    assert body["sma_20"] == pytest.approx(sum(prices[-20:]) / 20, rel=1e-12)
    assert body["bb_middle"] == pytest.approx(body["sma_20"], rel=1e-12)


def test_indicator_history_is_the_last_snapshots_oldest_first(client, market):
    t0 = MIDNIGHT + timedelta(hours=13)
    prices = walk(40, seed=5, start=415.2)
    rows = [("MSFT", t0 + timedelta(seconds=0.5 * i), p, 10) for i, p in enumerate(prices)]
    feed(rows)
    body = get_json(client, "stocks/MSFT/indicators/history", limit=10)
    assert body["symbol"] == "MSFT"
    assert body["count"] == 10
    assert [(utc(r["ts"]), r["price"]) for r in body["results"]] == [
        (ts, price) for _, ts, price, _ in rows[-10:]
    ]
    for r in body["results"]:
        assert set(r) == {"ts", "price", *INDICATOR_FIELDS}
        assert {f: r[f] for f in INDICATOR_FIELDS} == stored_snapshot("MSFT", utc(r["ts"]))
    latest = get_json(client, "stocks/MSFT/indicators")
    assert body["results"][-1] == {f: latest[f] for f in ("ts", "price", *INDICATOR_FIELDS)}

    everything = get_json(client, "stocks/MSFT/indicators/history")
    assert everything["count"] == 40
    first = everything["results"][0]
    assert utc(first["ts"]) == t0
    assert all(first[f] is None for f in WARM_UP)


# /bars


def test_minute_bars_are_the_ohlcv_of_the_ticks_with_the_open_minute_last(client, market):
    rows = recent_rows(["AAPL", "MSFT"], count=200, every_s=20)  # 66 minutes up to now
    feed(rows)
    body = get_json(client, "stocks/AAPL/bars", interval="1m")
    assert body["symbol"] == "AAPL"
    expected = candles(rows, "AAPL", BUCKETS["1m"])
    assert answered_candles(body) == expected
    assert body["count"] == len(expected)
    # The still-open minute, the one the newest tick is in, is the last candle.
    newest = max(r[1] for r in rows if r[0] == "AAPL")
    assert answered_candles(body)[-1]["ts"] == BUCKETS["1m"](newest)
    # No interval given: 1-minute bars.
    assert get_json(client, "stocks/AAPL/bars") == body


@pytest.mark.parametrize("interval", ["5m", "15m", "1h"])
def test_longer_bars_roll_up_the_ticks_including_the_open_bucket(client, market, interval):
    rows = recent_rows(["TSLA", "GOOGL"], count=250, every_s=30)  # two hours up to now
    feed(rows)
    body = get_json(client, "stocks/TSLA/bars", interval=interval)
    expected = candles(rows, "TSLA", BUCKETS[interval])
    assert answered_candles(body) == expected
    assert body["results"][-1]["ts"].endswith(":00Z")


def test_bars_limit_keeps_the_newest_buckets(client, market):
    rows = recent_rows(["AAPL"], count=120, every_s=15)  # 30 minutes
    feed(rows)
    expected = candles(rows, "AAPL", BUCKETS["1m"])
    assert answered_candles(get_json(client, "stocks/AAPL/bars", limit=3)) == expected[-3:]
    assert answered_candles(get_json(client, "stocks/AAPL/bars", limit=1)) == expected[-1:]


def test_bars_between_start_and_end(client, market):
    # 13:50 to 15:10 on a past day, a tick every 20 s.
    t0 = datetime(2026, 3, 2, 13, 50, tzinfo=UTC)
    rows = [("AMZN", t0 + timedelta(seconds=20 * i), p, 1 + i % 9)
            for i, p in enumerate(walk(241, seed=8))]  # fmt: skip
    feed(rows)
    hourly = candles(rows, "AMZN", BUCKETS["1h"])
    assert [c["ts"].hour for c in hourly] == [13, 14, 15]
    body = get_json(client, "stocks/AMZN/bars", interval="1h",
                    start="2026-03-02T13:00:00Z", end="2026-03-02T16:00:00Z")  # fmt: skip
    assert answered_candles(body) == hourly
    # A window holding only the 14:00 hour.
    body = get_json(client, "stocks/AMZN/bars", interval="1h",
                    start="2026-03-02T14:00:00Z", end="2026-03-02T15:00:00Z")  # fmt: skip
    assert answered_candles(body) == hourly[1:2]
    # Dates with an offset mean the same instants.
    body = get_json(client, "stocks/AMZN/bars", interval="5m",
                    start="2026-03-02T15:00:00+01:00", end="2026-03-02T15:30:00+01:00")  # fmt: skip
    five = [c for c in candles(rows, "AMZN", BUCKETS["5m"])
            if datetime(2026, 3, 2, 14, tzinfo=UTC) <= c["ts"] < datetime(2026, 3, 2, 14, 30,
                                                                         tzinfo=UTC)]  # fmt: skip
    assert len(five) == 6
    assert answered_candles(body) == five


def test_daily_bars_start_at_midnight_utc(client, market):
    rows = across_midnight()
    feed(rows)
    body = get_json(client, "stocks/GOOGL/bars", interval="1d",
                    start="2026-03-01T00:00:00Z", end="2026-03-05T00:00:00Z")  # fmt: skip
    assert [c["ts"] for c in body["results"]] == ["2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"]
    assert answered_candles(body) == candles(rows, "GOOGL", BUCKETS["1d"])


def test_bars_of_a_symbol_without_ticks_are_empty(client, market):
    for interval in BUCKETS:
        body = get_json(client, "stocks/MSFT/bars", interval=interval)
        assert body == {"symbol": "MSFT", "count": 0, "results": []}


# /market/overview


def overview_rows() -> list[tuple]:
    t0 = MIDNIGHT + timedelta(hours=15)

    def at(i: int) -> datetime:
        return t0 + timedelta(seconds=0.5 * i)

    rows = []
    for i in range(30):
        rows.append(("AAPL", at(i), 100.0 + i, 10))  # steady rise: +29 %
        rows.append(("MSFT", at(i), 200.0 + 0.1 * i, 20))  # small rise
        rows.append(("GOOGL", at(i), 150.0 - 0.2 * i, 30))  # fall
        # Quiet, then a sharp drop on the last tick: an anomaly.
        rows.append(("TSLA", at(i), 90.0 if i == 29 else 100.0 + 0.01 * (i % 2), 40))
    rows.append(("AMZN", at(0), 186.4, 50))  # one tick: unchanged on the day
    return rows


def is_anomalous(prices: list[float], threshold: float = 3.0) -> bool:
    window = np.array(prices[-20:])
    return len(window) == 20 and abs(window[-1] - window.mean()) / window.std() >= threshold


def test_overview_counts_breadth_sorts_movers_and_lists_anomalies(client, market):
    rows = overview_rows()
    feed(rows)
    body = get_json(client, "market/overview")
    utc(body["ts"])
    by_symbol = {s["symbol"]: s for s in body["symbols"]}
    assert sorted(by_symbol) == TICKERS
    indicators = {t: get_json(client, f"stocks/{t}/indicators") for t in TICKERS}
    for ticker, entry in by_symbol.items():
        expected = session(rows, ticker)
        assert set(entry) == {"symbol", "price", "change_pct", "volume", "rsi_14", "anomaly"}
        assert entry["price"] == expected["price"]
        assert entry["change_pct"] == pytest.approx(expected["change_pct"], rel=1e-12, abs=1e-12)
        assert entry["volume"] == expected["volume"]
        assert entry["rsi_14"] == indicators[ticker]["rsi_14"]

    changes = {t: session(rows, t)["change_pct"] for t in TICKERS}
    assert body["advancers"] == sum(c > 0 for c in changes.values()) == 2
    assert body["decliners"] == sum(c < 0 for c in changes.values()) == 2
    assert [g["symbol"] for g in body["top_gainers"]] == ["AAPL", "MSFT"]
    assert [g["symbol"] for g in body["top_losers"]] == ["TSLA", "GOOGL"]
    assert body["top_gainers"][0] == by_symbol["AAPL"]

    prices = defaultdict(list)
    for ticker, _, price, _ in rows:
        prices[ticker].append(price)
    anomalous = sorted(t for t in TICKERS if is_anomalous(prices[t]))
    assert anomalous == ["TSLA"]
    assert [a["symbol"] for a in body["anomalies"]] == anomalous
    assert body["anomalies"][0]["anomaly"] is True
    assert by_symbol["AAPL"]["anomaly"] is False


def test_overview_shows_at_most_five_gainers_and_losers_best_first(client, market):
    extra = [f"Z{i}" for i in range(8)]
    Symbol.objects.bulk_create(
        [Symbol(ticker=t, name=t, exchange="NYSE", start_price=10.0) for t in extra]
    )
    t0 = MIDNIGHT + timedelta(hours=16)
    rows = []
    for k, ticker in enumerate(extra):  # Z0 +1 %, Z1 -2 %, Z2 +3 % ... alternating
        move = (k + 1) * (1 if k % 2 == 0 else -1)
        rows += [(ticker, t0, 100.0, 1), (ticker, t0 + timedelta(seconds=1), 100.0 + move, 1)]
    feed(rows)
    body = get_json(client, "market/overview")
    assert [g["symbol"] for g in body["top_gainers"]] == ["Z6", "Z4", "Z2", "Z0"]
    assert [g["symbol"] for g in body["top_losers"]] == ["Z7", "Z5", "Z3", "Z1"]
    more = [(f"Y{i}", i) for i in range(3)]
    Symbol.objects.bulk_create(
        [Symbol(ticker=t, name=t, exchange="NYSE", start_price=10.0) for t, _ in more]
    )
    feed([r for t, i in more for r in ((t, t0, 10.0, 1), (t, t0 + timedelta(seconds=1),
                                                          10.0 + 0.01 * (i + 1), 1))])  # fmt: skip
    body = get_json(client, "market/overview")
    gainers = [g["change_pct"] for g in body["top_gainers"]]
    assert len(gainers) == 5
    assert gainers == sorted(gainers, reverse=True)
    assert [g["symbol"] for g in body["top_gainers"]] == ["Z6", "Z4", "Z2", "Z0", "Y2"]
    assert body["advancers"] == 7
    assert body["decliners"] == 4


def test_overview_before_any_tick_has_every_active_symbol_and_no_movers(client, market):
    body = get_json(client, "market/overview")
    assert sorted(s["symbol"] for s in body["symbols"]) == TICKERS
    assert body["advancers"] == body["decliners"] == 0
    assert body["top_gainers"] == body["top_losers"] == body["anomalies"] == []
    assert all(s["price"] is None and s["anomaly"] is False for s in body["symbols"])


# Paths, symbols and parameters.


@pytest.mark.parametrize("path", ALL_PATHS)
def test_every_path_answers_with_and_without_a_trailing_slash(client, market, path):
    feed(across_midnight())
    bare = client.get(f"{API}/{path}")
    slashed = client.get(f"{API}/{path}/")
    assert bare.status_code == slashed.status_code == 200  # no redirect either way
    a, b = bare.json(), slashed.json()
    if path == "market/overview":
        a.pop("ts"), b.pop("ts")
    if path == "stocks":  # pagination links repeat the path as asked
        a.pop("next"), a.pop("previous"), b.pop("next"), b.pop("previous")
    assert a == b


@pytest.mark.parametrize("endpoint", SYMBOL_PATHS)
@pytest.mark.parametrize("spelled", ["aapl", "Aapl", "AAPL"])
def test_symbols_are_case_insensitive_in_and_upper_case_out(client, market, endpoint, spelled):
    feed(across_midnight())
    body = get_json(client, f"stocks/{spelled}/{endpoint}")
    assert body["symbol"] == "AAPL"
    assert body == get_json(client, f"stocks/AAPL/{endpoint}")


@pytest.mark.parametrize("endpoint", SYMBOL_PATHS)
@pytest.mark.parametrize("symbol", ["NOPE", "%00", "AAPL%00", "A" * 40, "..", "%20", "a.b", "é"])
def test_an_unknown_symbol_is_a_404_with_detail(client, market, endpoint, symbol):
    response = client.get(f"{API}/stocks/{symbol}/{endpoint}")
    assert response.status_code == 404
    assert "detail" in response.json()


def test_a_deleted_symbol_is_unknown_at_once_though_it_had_ticks(
    client, market, redis_client, django_capture_on_commit_callbacks
):
    feed([("TSLA", MIDNIGHT, 250.0, 10)])
    assert get_json(client, "stocks/TSLA/price")["price"] == 250.0
    with django_capture_on_commit_callbacks(execute=True):
        Symbol.objects.filter(ticker="TSLA").delete()
    for endpoint in ("price", "indicators", "history", "bars"):
        assert client.get(f"{API}/stocks/TSLA/{endpoint}").status_code == 404


BAD_PARAMETERS = [
    *(
        (path, {"limit": value}, "limit")
        for path in ("history", "indicators/history", "bars")
        for value in ("0", "5001", "-1", "abc", "1.5", "%00", "99999999999999999999999")
    ),
    ("bars", {"interval": "2m"}, "interval"),
    ("bars", {"interval": "1M"}, "interval"),
    ("bars", {"interval": "%00"}, "interval"),
    # An empty value is malformed, not "use the default".
    ("bars", {"interval": ""}, "interval"),
    *((path, {"limit": ""}, "limit") for path in ("history", "indicators/history", "bars")),
    *(("bars", {name: ""}, name) for name in ("start", "end")),
    ("bars", {"start": "2026-03-03T00:00:00Z", "end": "2026-03-02T00:00:00Z"}, "start"),
    *(
        ("bars", {name: value}, name)
        for name in ("start", "end")
        for value in (
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-03-02T25:00:00Z",
            "2026-13-01",
            "%00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0000-01-01T00:00:00Z",
            "1e308",
        )
    ),
]


@pytest.mark.parametrize(("endpoint", "params", "name"), BAD_PARAMETERS)
def test_a_bad_parameter_is_a_400_naming_it(client, market, endpoint, params, name):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = client.get(f"{API}/stocks/AAPL/{endpoint}?{query}")
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert name in body or name in json.dumps(body.get("detail", "")), body


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [
        ("history", {"limit": "1"}),
        ("history", {"limit": "5000"}),
        ("indicators/history", {"limit": "1"}),
        ("indicators/history", {"limit": "5000"}),
        *(("bars", {"interval": i, "limit": "5000"}) for i in BUCKETS),
        *(("bars", {"interval": i, "limit": "1"}) for i in BUCKETS),
        ("bars", {"start": "2026-03-02T00:00:00Z", "end": "2026-03-02T00:00:00Z"}),
        ("bars", {"start": "1970-01-01T00:00:00Z", "interval": "1d", "limit": "5000"}),
        ("bars", {"end": "1970-01-02T00:00:00Z", "interval": "1d", "limit": "5000"}),
        ("bars", {"start": "2026-03-02T14:00:00"}),  # no offset: UTC
        ("bars", {"start": "2026-03-02"}),
    ],
)
def test_parameters_in_range_are_accepted(client, market, endpoint, params):
    feed(across_midnight())
    body = get_json(client, f"stocks/aapl/{endpoint}", **params)
    assert body["symbol"] == "AAPL"
    assert body["count"] == len(body["results"]) <= int(params.get("limit", 5000))


@pytest.mark.parametrize(
    "path",
    [
        "stocks?search=%00",
        "stocks?exchange=%00",
        "stocks?sector=%00",
        "stocks?active=%00",
        "stocks?page=%00",
        "stocks?page=0",
        "stocks?page=99999",
        "stocks?page_size=%00",
        "stocks?page_size=-5",
        "stocks?page_size=99999999999999999999",
        "stocks?search=" + "x" * 5000,
        "stocks?search=%27%3B--",
        "stocks?search=%25",
        "stocks?search=_",
        "stocks?search=%F0%9F%98%80",
        "stocks?search=%ff%fe",
        "market/overview?%00=%00",
        "stocks/%00/price",
        "stocks/AAPL/history?limit=%00&limit=5",
        "stocks/AAPL/bars?interval=1m&interval=%00",
        "stocks/AAPL/bars?start=%00&end=%00&interval=%00&limit=%00",
        "stocks/AAPL%00/indicators/history?limit=%00",
        "stocks/%F0%9F%98%80/bars",
        "stocks/%ff/price",
    ],
)
def test_nothing_a_client_sends_is_a_server_error(client, market, path):
    response = client.get(f"{API}/{path}")
    assert response.status_code < 500, (path, response.status_code)
    assert response.status_code in (200, 400, 404), (path, response.status_code)
    body = response.json()
    if response.status_code == 400:
        names = {k for k in body if k != "detail"}
        named_in_query = {part.split("=")[0] for part in path.partition("?")[2].split("&")}
        assert names & named_in_query or "detail" in body, body
    if response.status_code == 200 and "search=%00" in path:
        assert body["count"] == 0


@pytest.mark.parametrize("path", ALL_PATHS)
def test_the_browsable_api_renders_every_endpoint(client, market, path):
    feed(across_midnight())
    response = client.get(f"{API}/{path}", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"AAPL" in response.content


# The queries behind history, indicator history and minute bars use the primary keys.


@pytest.fixture
def big_history(market):
    """20,000 ticks (a minute apart per symbol, so as many minute bars), then ANALYZE."""
    rows = recent_rows(TICKERS, count=4000, every_s=60)
    feed(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE market_tick, market_bar, indicators_indicatorsnapshot")
        cursor.execute("SELECT count(*) FROM market_tick")
        assert cursor.fetchone()[0] == 20_000
        cursor.execute("SELECT count(*) FROM market_bar WHERE interval = '1m'")
        assert cursor.fetchone()[0] >= 20_000
    return rows


@pytest.mark.parametrize(
    ("endpoint", "table", "count"),
    [
        ("history?limit=120", "market_tick", 120),
        ("indicators/history?limit=120", "indicators_indicatorsnapshot", 120),
        ("bars?interval=1m&limit=500", "market_bar", 500),
        ("bars?interval=1h&limit=48", "market_bar", 48),  # rolled up from minute bars
    ],
)
def test_series_queries_scan_the_primary_key_index(client, big_history, endpoint, table, count):
    with CaptureQueriesContext(connection) as queries:
        body = get_json(client, f"stocks/MSFT/{endpoint}")
    assert body["count"] == count
    issued = [q["sql"] for q in queries.captured_queries if table in q["sql"]]
    assert len(issued) == 1, issued
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {issued[0]}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan" not in plan, plan
    assert "Index Scan" in plan, plan
    assert f"{table}_pkey" in plan, plan
