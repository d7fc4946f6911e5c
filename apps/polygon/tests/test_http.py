"""The gateway's contracts over Django's test client (docs/polygon.md): who may read, the
400/404/401/429 bodies, ignored parameters, and pages that chain through `next_url`.
Expected values come from what the test stored or from the /api/v1 door."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import numpy as np
import pytest
import talib
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest
from apps.market import keys
from apps.polygon import params as p

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(microsecond=0)
TICKS = [("AAPL", NOW - timedelta(seconds=30 * (24 - i)), 100.0 + i / 8, 10 + i) for i in range(25)]
# The newest two carry quotes (a source's quote may be older than its last trade).
QUOTES = {23: (102.86, 102.89, 700, 300), 24: (103.0, 103.01, 1000, 200)}
ROWS = [(*tick, *QUOTES.get(i, ())) for i, tick in enumerate(TICKS)]
DAY = NOW.date().isoformat()
PATHS = [
    "/v2/aggs/ticker/AAPL/range/1/minute/2020-01-01/2199-01-01",
    "/v2/aggs/ticker/AAPL/prev",
    f"/v2/aggs/grouped/locale/us/market/stocks/{DAY}",
    "/v2/last/trade/AAPL",
    "/v2/last/nbbo/AAPL",
    "/v3/trades/AAPL",
    "/v3/reference/tickers",
    "/v3/reference/tickers/AAPL",
    "/v2/snapshot/locale/us/markets/stocks/tickers",
    "/v2/snapshot/locale/us/markets/stocks/tickers/AAPL",
    "/v1/indicators/sma/AAPL",
    "/v1/indicators/ema/AAPL",
    "/v1/indicators/rsi/AAPL",
    "/v1/indicators/macd/AAPL",
]
TICKER_PATHS = [path for path in PATHS if "AAPL" in path]


@pytest.fixture
def stored(market, redis_client):
    store.forget()
    ingest(TickBatch.from_rows(ROWS))
    yield
    store.forget()


@pytest.fixture
def login_only(settings):
    settings.MARKETFLUX_PUBLIC_READ = False


@pytest.fixture
def key(alice) -> str:
    return Token.objects.create(user=alice).key


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def pages(client, path: str, **params) -> list[dict]:
    """Every page from `path`, following `next_url` with nothing but its path and query."""
    answer = client.get(path, params)
    assert answer.status_code == 200, answer.content[:300]
    out = [answer.json()]
    while "next_url" in out[-1]:
        answer = client.get(relative(out[-1]["next_url"]))
        assert answer.status_code == 200, answer.content[:300]
        out.append(answer.json())
    assert len(out) < 1000
    return out


def results(answers: list[dict]) -> list[dict]:
    return [row for answer in answers for row in answer["results"]]


# Who may read.


@pytest.mark.parametrize("path", PATHS)
def test_any_key_or_none_reads_with_public_read_on(client, stored, path):
    assert client.get(path).status_code == 200
    assert client.get(path, headers={"authorization": "Bearer nonsense"}).status_code == 200
    assert client.get(path, {"apiKey": "nonsense"}).status_code == 200


@pytest.mark.parametrize("path", PATHS)
def test_with_public_read_off_a_missing_or_unknown_key_is_401(client, stored, login_only, path):
    for answer in (
        client.get(path),
        client.get(path, headers={"authorization": "Bearer nonsense"}),
        client.get(path, {"apiKey": "nonsense"}),
    ):
        assert answer.status_code == 401
        body = answer.json()
        assert body["status"] == "NOT_AUTHORIZED"
        assert body["error"]
        assert body["request_id"]


@pytest.mark.parametrize("path", PATHS)
def test_with_public_read_off_a_user_token_reads(client, stored, login_only, key, path):
    assert client.get(path, headers={"authorization": f"Bearer {key}"}).status_code == 200
    assert client.get(path, {"apiKey": key}).status_code == 200


def test_the_throttle_answers_429_with_retry_after(client, stored, settings, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "2/min", "user": "5/min"})
    for _ in range(2):
        assert client.get("/v2/last/trade/AAPL").status_code == 200
    answer = client.get("/v3/reference/tickers")
    assert answer.status_code == 429
    assert 0 < int(answer["Retry-After"]) <= 60
    assert answer.json()["status"] == "ERROR"


# Unknown tickers, bad values, unknown parameters.


@pytest.mark.parametrize("path", TICKER_PATHS)
def test_an_unknown_ticker_is_404_with_a_json_body(client, stored, path):
    answer = client.get(path.replace("AAPL", "NOPE"))
    assert answer.status_code == 404
    assert answer.json()["status"] == "NOT_FOUND"
    assert "NOPE" in answer.json()["error"]


@pytest.mark.parametrize(
    "path", ["/v2/last/trade/AAPL/", "/v3/reference/tickers/", "/v3/quotes/AAPL", "/v1/x"]
)
def test_a_path_the_gateway_does_not_serve_is_a_json_404(client, stored, path):
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json()["status"] == "NOT_FOUND"
    assert path in answer.json()["error"]


AGGS = "/v2/aggs/ticker/AAPL/range"
SNAPSHOTS = "/v2/snapshot/locale/us/markets/stocks/tickers"


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        (f"{AGGS}/1/minute/2020-01-01/2199-01-01", {"limit": "0"}, "limit"),
        (f"{AGGS}/1/minute/2020-01-01/2199-01-01", {"limit": "50001"}, "limit"),
        (f"{AGGS}/1/minute/2020-01-01/2199-01-01", {"sort": "sideways"}, "sort"),
        (f"{AGGS}/1/minute/2020-01-01/2199-01-01", {"adjusted": "maybe"}, "adjusted"),
        (f"{AGGS}/1/fortnight/2020-01-01/2199-01-01", {}, "timespan"),
        (f"{AGGS}/1/decade/2020-01-01/2199-01-01", {}, "timespan"),
        (f"{AGGS}/119/month/2020-01-01/2199-01-01", {}, "multiplier"),
        (f"{AGGS}/0/minute/2020-01-01/2199-01-01", {}, "multiplier"),
        (f"{AGGS}/x/minute/2020-01-01/2199-01-01", {}, "multiplier"),
        (f"{AGGS}/1/minute/yesterday/2199-01-01", {}, "from"),
        (f"{AGGS}/1/minute/2020-01-01/2020-02-30", {}, "to"),
        (f"{AGGS}/1/minute/2020-01-01/2199-01-01", {"cursor": "%%%"}, "cursor"),
        ("/v2/aggs/ticker/AAPL/prev", {"adjusted": "1"}, "adjusted"),
        ("/v2/aggs/grouped/locale/us/market/stocks/today", {}, "date"),
        ("/v3/trades/AAPL", {"timestamp.gte": "noon"}, "timestamp.gte"),
        ("/v3/trades/AAPL", {"timestamp": "-5"}, "timestamp"),
        ("/v3/trades/AAPL", {"order": "random"}, "order"),
        ("/v3/trades/AAPL", {"sort": "price"}, "sort"),
        ("/v3/trades/AAPL", {"limit": "50001"}, "limit"),
        ("/v3/reference/tickers", {"active": "yes"}, "active"),
        ("/v3/reference/tickers", {"limit": "1001"}, "limit"),
        ("/v3/reference/tickers", {"search": "a\x00"}, "search"),
        ("/v3/reference/tickers", {"ticker.gt": "\x00"}, "ticker.gt"),
        (SNAPSHOTS, {"tickers": "AAPL,\x00"}, "tickers"),
        ("/v1/indicators/sma/AAPL", {"window": "1"}, "window"),
        ("/v1/indicators/ema/AAPL", {"window": "1001"}, "window"),
        ("/v1/indicators/rsi/AAPL", {"window": "x"}, "window"),
        ("/v1/indicators/macd/AAPL", {"short_window": "26"}, "short_window"),
        ("/v1/indicators/macd/AAPL", {"signal_window": "0"}, "signal_window"),
        ("/v1/indicators/sma/AAPL", {"series_type": "volume"}, "series_type"),
        ("/v1/indicators/sma/AAPL", {"timespan": "second"}, "timespan"),
        ("/v1/indicators/sma/AAPL", {"timespan": "fortnight"}, "timespan"),
        ("/v1/indicators/sma/AAPL", {"limit": "5001"}, "limit"),
        ("/v1/indicators/sma/AAPL", {"order": "up"}, "order"),
        ("/v1/indicators/sma/AAPL", {"expand_underlying": "yes"}, "expand_underlying"),
        ("/v1/indicators/sma/AAPL", {"timestamp.gte": "noon"}, "timestamp.gte"),
        ("/v1/indicators/sma/AAPL", {"timestamp": "2020-02-30"}, "timestamp"),
        ("/v1/indicators/sma/AAPL", {"timestamp.lt": "\u00b2"}, "timestamp.lt"),
        (SNAPSHOTS, {"tickers": ",".join(f"T{i}" for i in range(1001))}, "tickers"),
    ],
)
def test_a_bad_value_is_400_naming_the_parameter(client, stored, path, params, name):
    answer = client.get(path, params)
    assert answer.status_code == 400, answer.content[:300]
    body = answer.json()
    assert body["status"] == "ERROR"
    assert list(body["errors"]) == [name]
    assert name in body["error"]


@pytest.mark.parametrize("path", PATHS)
def test_unknown_parameters_are_ignored(client, stored, path):
    plain = client.get(path).json()
    odd = client.get(path, {"include_otc": "false", "format": "xml", "whatever": "1"})
    assert odd.status_code == 200
    assert {**odd.json(), "request_id": ""} == {**plain, "request_id": ""}


# Values and pages.


def test_trades_are_the_stored_ticks_and_pages_chain_both_ways(client, stored):
    stored_ticks = [(ts, price, size) for _, ts, price, size in TICKS]
    asc = pages(client, "/v3/trades/AAPL", order="asc", limit=7)
    assert len(asc) == 4
    rows = results(asc)
    assert [(r["sip_timestamp"], r["price"], r["size"]) for r in rows] == [
        (int(ts.timestamp()) * 10**9, price, size) for ts, price, size in stored_ticks
    ]
    assert all(r["participant_timestamp"] == r["sip_timestamp"] for r in rows)
    assert rows[0]["exchange"] == 12  # AAPL is on NASDAQ
    assert rows[0]["tape"] == 3
    desc = results(pages(client, "/v3/trades/AAPL", limit=10))  # newest first by default
    assert desc == rows[::-1]
    # The window's bounds hold across pages; gt/lt in ns exclude their own tick.
    third, ninth = rows[2]["sip_timestamp"], rows[8]["sip_timestamp"]
    window = results(
        pages(client, "/v3/trades/AAPL", order="asc", limit=2,
              **{"timestamp.gt": str(third), "timestamp.lte": str(ninth)})
    )  # fmt: skip
    assert window == rows[3:9]
    assert results(pages(client, "/v3/trades/AAPL", timestamp=str(third))) == [rows[2]]
    day = results(pages(client, "/v3/trades/AAPL", timestamp=DAY, order="asc"))
    assert day == [r for r in rows if datetime.fromtimestamp(r["sip_timestamp"] / 1e9, UTC).date()
                   == NOW.date()]  # fmt: skip


def test_the_last_trade_is_the_newest_tick(client, stored, redis_client):
    last = client.get("/v2/last/trade/aapl").json()["results"]
    _, ts, price, size = TICKS[-1]
    assert (last["T"], last["p"], last["s"]) == ("AAPL", price, size)
    assert last["t"] == last["y"] == int(ts.timestamp()) * 10**9
    redis_client.delete(keys.hot("AAPL"))  # Redis lost the hot state: the stored tick
    assert client.get("/v2/last/trade/AAPL").json()["results"] == last
    assert client.get("/v2/last/nbbo/AAPL").json()["results"]["P"] == QUOTES[24][1]


def test_the_last_quote_is_the_newest_stored_quote_in_round_lots(client, stored):
    last = client.get("/v2/last/nbbo/aapl").json()["results"]
    ts = TICKS[24][1]
    assert last == {"T": "AAPL", "t": int(ts.timestamp()) * 10**9, "y": int(ts.timestamp()) * 10**9,
                    "q": int(ts.timestamp()) * 10**6, "p": 103.0, "s": 10, "x": 12,
                    "P": 103.01, "S": 2, "X": 12, "z": 3, "c": [], "i": []}  # fmt: skip
    # A newer trade without a quote: the quote is still the newest one stored.
    ingest(TickBatch.from_rows([("AAPL", NOW + timedelta(seconds=1), 103.5, 5)]))
    assert client.get("/v2/last/nbbo/AAPL").json()["results"]["P"] == 103.01
    unquoted = client.get("/v2/last/nbbo/MSFT")  # a symbol without any quote
    assert unquoted.status_code == 404
    assert unquoted.json()["status"] == "NOT_FOUND"
    assert "No quote of MSFT" in unquoted.json()["error"]


@pytest.mark.parametrize(
    ("timespan", "interval", "limit"), [("minute", "1m", 4), ("hour", "1h", 3), ("day", "1d", 1)]
)
def test_aggregate_pages_chain_and_equal_the_bars(client, stored, timespan, interval, limit):
    call_command("backfill", days=1, symbols="AAPL")
    bars = client.get("/api/v1/stocks/AAPL/bars", {"interval": interval, "limit": 5000}).json()
    expected = [
        (int(datetime.fromisoformat(b["ts"]).timestamp() * 1000), b["open"], b["high"], b["low"],
         b["close"], b["volume"], b["trades"])
        for b in bars["results"]
    ]  # fmt: skip
    first = datetime.fromtimestamp(expected[0][0] / 1000, UTC).date().isoformat()
    path = f"{AGGS}/1/{timespan}/{first}/2199-01-01"
    # limit: several pages for minutes and hours (a day's 1,440 minutes: a big page size)
    size = 500 if timespan == "minute" else limit
    answers = pages(client, path, limit=size)
    assert len(answers) > 1
    got = [(r["t"], r["o"], r["h"], r["l"], r["c"], r["v"], r["n"]) for r in results(answers)]
    assert got == expected
    assert "next_url" not in answers[-1]
    backwards = results(pages(client, path, limit=size, sort="desc"))
    assert [r["t"] for r in backwards] == [row[0] for row in reversed(expected)]


def test_seconds_are_summed_from_the_ticks_and_pages_cover_every_window(client, stored):
    t0 = NOW.replace(second=0) - timedelta(minutes=10)  # a whole minute: even seconds too
    ingest(TickBatch.from_rows([
        ("MSFT", t0 + timedelta(seconds=s), price, size) for s, price, size in (
            (0.2, 10.0, 1), (0.7, 11.0, 2), (1.1, 9.0, 3), (1.5, 12.0, 4), (1.9, 10.5, 5),
            (4.0, 8.0, 6))
    ]))  # fmt: skip
    ms0 = int(t0.timestamp()) * 1000
    path = f"/v2/aggs/ticker/MSFT/range/{{}}/second/{ms0}/{ms0 + 10_000}"
    by_hand = [
        {"t": ms0, "o": 10.0, "h": 11.0, "l": 10.0, "c": 11.0, "v": 3, "n": 2},
        {"t": ms0 + 1000, "o": 9.0, "h": 12.0, "l": 9.0, "c": 10.5, "v": 12, "n": 3},
        {"t": ms0 + 4000, "o": 8.0, "h": 8.0, "l": 8.0, "c": 8.0, "v": 6, "n": 1},
    ]

    def ohlcvn(rows: list[dict]) -> list[dict]:
        return [{k: r[k] for k in "tohlcvn"} for r in rows]

    answers = pages(client, path.format(1), limit=2)  # a page spans at most 2 seconds
    assert ohlcvn(results(answers)) == by_hand
    assert len(answers) == 6  # [0,2) [2,4) [4,6) [6,8) [8,10) [10,11): some pages empty
    assert ohlcvn(results(pages(client, path.format(1), limit=2, sort="desc"))) == by_hand[::-1]
    assert ohlcvn(results(pages(client, path.format(2)))) == [
        {"t": ms0, "o": 10.0, "h": 12.0, "l": 9.0, "c": 10.5, "v": 15, "n": 5},
        {"t": ms0 + 4000, "o": 8.0, "h": 8.0, "l": 8.0, "c": 8.0, "v": 6, "n": 1},
    ]


def test_months_quarters_and_years_add_up_the_utc_days(client, stored):
    call_command("backfill", days=100, symbols="AAPL")
    days = client.get("/api/v1/stocks/AAPL/bars", {"interval": "1d", "limit": 5000}).json()
    by_month: dict[tuple[int, int], list[dict]] = {}
    for day in days["results"]:
        at = datetime.fromisoformat(day["ts"])
        by_month.setdefault((at.year, at.month), []).append(day)

    def bucket(key: tuple[int, int], days_in: list[dict]) -> dict:
        return {"t": int(datetime(*key, 1, tzinfo=UTC).timestamp()) * 1000,
                "o": days_in[0]["open"], "h": max(d["high"] for d in days_in),
                "l": min(d["low"] for d in days_in), "c": days_in[-1]["close"],
                "v": sum(d["volume"] for d in days_in),
                "n": sum(d["trades"] for d in days_in)}  # fmt: skip

    expected = [bucket(k, v) for k, v in sorted(by_month.items())]
    months = results(pages(client, f"{AGGS}/1/month/2020-01-01/2199-01-01", limit=2))
    assert [{k: r[k] for k in "tohlcvn"} for r in months] == expected
    backwards = results(pages(client, f"{AGGS}/1/month/2020-01-01/2199-01-01", limit=1,
                              sort="desc"))  # fmt: skip
    assert [r["t"] for r in backwards] == [r["t"] for r in expected[::-1]]
    # From the middle of a month: the buckets that start from then on, whole.
    second = datetime.fromtimestamp(expected[1]["t"] / 1000, UTC)
    later = results(pages(client, f"{AGGS}/1/month/{(second + timedelta(days=3)).date()}/"
                                  "2199-01-01"))  # fmt: skip
    assert [r["t"] for r in later] == [r["t"] for r in expected[2:]]
    quarters = results(pages(client, f"{AGGS}/1/quarter/2020-01-01/2199-01-01"))
    years = results(pages(client, f"{AGGS}/1/year/2020-01-01/2199-01-01"))
    for spans in (quarters, years):
        assert sum(r["v"] for r in spans) == sum(r["v"] for r in expected)
    for r in quarters:
        at = datetime.fromtimestamp(r["t"] / 1000, UTC)
        assert (at.month, at.day, at.hour) in {(1, 1, 0), (4, 1, 0), (7, 1, 0), (10, 1, 0)}
    assert {datetime.fromtimestamp(r["t"] / 1000, UTC).strftime("%m-%d") for r in years} == {
        "01-01"
    }
    sma = client.get("/v1/indicators/sma/AAPL", {"timespan": "month", "window": 2,
                                                 "order": "asc"}).json()  # fmt: skip
    closes = np.array([r["c"] for r in expected])
    assert [v["value"] for v in sma["results"]["values"]] == pytest.approx(
        talib.SMA(closes, 2)[1:].tolist(), abs=1e-9
    )


def test_longer_windows_add_up_the_minutes(client, stored):
    call_command("backfill", days=1, symbols="AAPL")
    minutes = results(pages(client, f"{AGGS}/1/minute/2020-01-01/2199-01-01", limit=50000))
    sevens = results(pages(client, f"{AGGS}/7/minute/2020-01-01/2199-01-01", limit=100))
    assert sum(r["v"] for r in sevens) == sum(r["v"] for r in minutes)
    assert max(r["h"] for r in sevens) == max(r["h"] for r in minutes)
    assert all((r["t"] // 60000) % 7 == (sevens[0]["t"] // 60000) % 7 for r in sevens)
    # A window in ms: exactly the minutes starting in it, both ends included.
    t0, t1 = minutes[10]["t"], minutes[19]["t"]
    assert results(pages(client, f"{AGGS}/1/minute/{t0}/{t1}")) == minutes[10:20]


def test_the_last_window_is_whole_when_to_is_its_start(client, stored):
    call_command("backfill", days=1, symbols="AAPL")
    for span in ("1/hour", "3/minute"):  # the open hour (from minutes); any 3 minutes
        every = results(pages(client, f"{AGGS}/{span}/2020-01-01/2199-01-01", limit=50000))
        for bar in (every[-1], every[len(every) // 2]):
            upto = results(pages(client, f"{AGGS}/{span}/{every[0]['t']}/{bar['t']}"))
            assert upto[-1] == bar


def test_tickers_page_and_filter(client, stored):
    everything = results(pages(client, "/v3/reference/tickers", limit=2))
    assert [t["ticker"] for t in everything] == ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]
    assert (
        results(pages(client, "/v3/reference/tickers", order="desc", limit=3)) == everything[::-1]
    )
    found = results(pages(client, "/v3/reference/tickers", search="micro"))
    assert [t["ticker"] for t in found] == ["MSFT"]
    assert (
        results(pages(client, "/v3/reference/tickers", ticker="TSLA"))[0]["name"] == "Tesla, Inc."
    )
    assert results(pages(client, "/v3/reference/tickers", active="false")) == []
    details = client.get("/v3/reference/tickers/msft", {"ticker": "MSFT"}).json()["results"]
    assert details["ticker"] == "MSFT"
    assert details["primary_exchange"] == "XNAS"


def test_the_schema_lists_every_path_under_the_polygon_tag(client, db):
    schema = client.get("/api/schema/", headers={"accept": "application/vnd.oai.openapi+json"})
    paths = {path: ops for path, ops in schema.json()["paths"].items() if path.startswith("/v")}
    assert len(paths) == len(PATHS)
    assert all(ops["get"]["tags"] == ["polygon"] for ops in paths.values())


def test_an_api_key_never_travels_in_a_cursor_and_odd_keys_are_unknown(client, stored, key):
    first = client.get("/v3/reference/tickers", {"limit": 2, "apiKey": key}).json()
    assert key not in first["next_url"]
    assert key not in p.cursor_decode(first["next_url"].split("cursor=")[1]).values()
    for odd in ("a\x00b", "x" * 41):
        assert client.get("/v2/last/trade/AAPL", {"apiKey": odd}).status_code == 200


def test_weeks_start_on_sunday_midnight_utc_and_hold_every_minute(client, stored):
    call_command("backfill", days=1, symbols="AAPL")
    minutes = results(pages(client, f"{AGGS}/1/minute/2020-01-01/2199-01-01", limit=50000))
    weeks = results(pages(client, f"{AGGS}/1/week/2020-01-01/2199-01-01"))
    starts = [datetime.fromtimestamp(w["t"] / 1000, UTC) for w in weeks]
    assert all(s.weekday() == 6 and s.time().isoformat() == "00:00:00" for s in starts)
    assert sum(w["v"] for w in weeks) == sum(m["v"] for m in minutes)
    assert weeks[0]["o"] == minutes[0]["o"]
    assert weeks[-1]["c"] == minutes[-1]["c"]


# Snapshots.


def never_null(value) -> bool:
    if isinstance(value, dict):
        return all(never_null(v) for v in value.values())
    if isinstance(value, list):
        return all(never_null(v) for v in value)
    return value is not None


def as_agg(bar: dict) -> dict:
    """An /api/v1 bar in the gateway's aggregate keys."""
    return {"t": int(datetime.fromisoformat(bar["ts"]).timestamp() * 1000), "o": bar["open"],
            "h": bar["high"], "l": bar["low"], "c": bar["close"], "v": bar["volume"],
            "n": bar["trades"]}  # fmt: skip


def test_snapshots_equal_the_price_and_the_bars(client, stored):
    call_command("backfill", days=2, symbols="AAPL")
    price = client.get("/api/v1/stocks/AAPL/price").json()
    days = client.get("/api/v1/stocks/AAPL/bars", {"interval": "1d", "limit": 10}).json()
    # From an hour before the ticks (NOW is when this module was imported, maybe minutes ago).
    since = (NOW - timedelta(hours=1)).isoformat()
    minutes = client.get("/api/v1/stocks/AAPL/bars", {"interval": "1m", "start": since}).json()
    today = datetime.fromisoformat(price["ts"]).date()
    (day,) = [b for b in days["results"] if datetime.fromisoformat(b["ts"]).date() == today]
    prev = [b for b in days["results"] if datetime.fromisoformat(b["ts"]).date() < today][-1]

    one = client.get(f"{SNAPSHOTS}/aapl").json()["ticker"]
    everyone = client.get(SNAPSHOTS).json()
    assert [t["ticker"] for t in everyone["tickers"]] == ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]
    assert everyone["count"] == 5
    assert everyone["tickers"][0] == one
    ns = int(datetime.fromisoformat(price["ts"]).timestamp()) * 10**9
    assert (one["lastTrade"]["p"], one["lastTrade"]["t"], one["updated"]) == (
        price["price"], ns, ns
    )  # fmt: skip
    assert one["lastTrade"]["s"] == TICKS[-1][3]
    assert {k: one["day"][k] for k in "tohlcvn"} == as_agg(day)
    assert {k: one["prevDay"][k] for k in "tohlcvn"} == as_agg(prev)
    assert {k: one["min"][k] for k in "tohlcvn"} == as_agg(minutes["results"][-1])
    assert one["min"]["av"] == day["volume"]
    assert one["todaysChange"] == price["price"] - prev["close"]
    assert one["todaysChangePerc"] == (price["price"] - prev["close"]) / prev["close"] * 100
    assert (one["lastQuote"]["p"], one["lastQuote"]["P"], one["lastQuote"]["t"]) == (
        103.0, 103.01, ns
    )  # fmt: skip
    assert (one["lastQuote"]["s"], one["lastQuote"]["S"]) == (10, 2)  # lots of 100 shares
    assert never_null(everyone)


def test_a_snapshot_part_without_data_is_left_out(client, stored):
    quiet = client.get(f"{SNAPSHOTS}/MSFT").json()["ticker"]  # no tick, no bar
    assert quiet == {"ticker": "MSFT"}
    apple = client.get(f"{SNAPSHOTS}/AAPL").json()["ticker"]  # ticks, no earlier day
    if TICKS[0][1].date() == NOW.date():  # all the ticks fell on today (not near midnight)
        assert "prevDay" not in apple
        assert "todaysChange" not in apple
        assert "todaysChangePerc" not in apple
    assert {"lastTrade", "day", "min", "updated"} <= set(apple)
    assert never_null(client.get(SNAPSHOTS).json())


def test_snapshots_of_named_tickers(client, stored):
    named = client.get(SNAPSHOTS, {"tickers": "msft, AAPL,NOPE,,"}).json()
    assert [t["ticker"] for t in named["tickers"]] == ["AAPL", "MSFT"]
    assert named["count"] == 2
    assert client.get(SNAPSHOTS, {"tickers": "NOPE"}).json()["tickers"] == []
    assert len(client.get(SNAPSHOTS, {"tickers": ""}).json()["tickers"]) == 5


def test_a_snapshot_of_every_symbol_costs_what_one_costs(client, stored):
    def queries(params: dict) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(SNAPSHOTS, params).status_code == 200
        return len(captured)

    assert queries({}) == queries({"tickers": "AAPL"}) <= 4


# Indicators: expected values from TA-Lib on the bars of /api/v1.

INDICATORS = "/v1/indicators"


def talib_values(kind: str, x: np.ndarray, params: dict) -> list[tuple]:
    """(value,) or (value, signal, histogram) per bar, as TA-Lib computes them."""
    if kind == "macd":
        columns = talib.MACD(x, int(params.get("short_window", 12)),
                             int(params.get("long_window", 26)),
                             int(params.get("signal_window", 9)))  # fmt: skip
    else:
        default = 14 if kind == "rsi" else 50
        columns = (getattr(talib, kind.upper())(x, int(params.get("window", default))),)
    return list(zip(*(c.tolist() for c in columns), strict=True))


def gateway_values(answer: dict) -> list[tuple[int, tuple]]:
    return [(v["timestamp"], tuple(v[k] for k in ("value", "signal", "histogram") if k in v))
            for v in answer["results"]["values"]]  # fmt: skip


def close_enough(got: list[tuple[int, tuple]], expected: list[tuple[int, tuple]]) -> bool:
    assert [t for t, _ in got] == [t for t, _ in expected]
    return all(
        abs(a - b) <= 1e-9 for (_, ours), (_, theirs) in zip(got, expected, strict=True)
        for a, b in zip(ours, theirs, strict=True)
    )  # fmt: skip


@pytest.fixture
def history(client, stored):
    """Two days of AAPL's minute bars; (ms, bar) per minute and per hour from /api/v1."""
    call_command("backfill", days=2, symbols="AAPL")
    out = {}
    for timespan, interval in (("minute", "1m"), ("hour", "1h")):
        bars = client.get("/api/v1/stocks/AAPL/bars", {"interval": interval, "limit": 5000})
        out[timespan] = [(as_agg(b)["t"], b) for b in bars.json()["results"]]
    assert len(out["minute"]) > 2800
    return out


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("sma", {}),
        ("sma", {"window": "7", "series_type": "high"}),
        ("ema", {}),
        ("ema", {"window": "10", "series_type": "low"}),
        ("rsi", {}),
        ("rsi", {"window": "30", "series_type": "open"}),
        ("macd", {}),
        ("macd", {"short_window": "5", "long_window": "35", "signal_window": "4"}),
    ],
)
@pytest.mark.parametrize("timespan", ["minute", "hour"])
def test_indicators_equal_talib_on_the_bars(client, history, kind, params, timespan):
    bars = history[timespan]
    x = np.array([b[params.get("series_type", "close")] for _, b in bars])
    expected = [(t, v) for (t, _), v in zip(bars, talib_values(kind, x, params), strict=True)
                if not np.isnan(v[0])]  # fmt: skip
    path = f"{INDICATORS}/{kind}/AAPL"
    newest = client.get(path, {"timespan": timespan, **params}).json()  # desc, 10 by default
    assert close_enough(gateway_values(newest), expected[-10:][::-1])
    everything = client.get(path, {"timespan": timespan, "order": "asc", "limit": 5000, **params})
    assert close_enough(gateway_values(everything.json()), expected)
    if len(expected) < 10:  # 48 hours: a 50-bar window has no value yet, as TA-Lib's
        return
    # A window: the bounds hold, asc from the first value in it, desc from the last.
    lo, hi = expected[len(expected) // 3][0], expected[len(expected) // 2][0]
    window = {"timespan": timespan, "timestamp.gt": str(lo), "timestamp.lte": str(hi), **params}
    inside = [e for e in expected if lo < e[0] <= hi]
    asc = client.get(path, {**window, "order": "asc", "limit": 3}).json()
    assert close_enough(gateway_values(asc), inside[:3])
    desc = client.get(path, {**window, "limit": 4}).json()
    assert close_enough(gateway_values(desc), inside[-4:][::-1])


def test_indicator_timestamps_as_a_date_ms_or_ns(client, history):
    path = f"{INDICATORS}/sma/AAPL"
    values = client.get(path, {"timespan": "minute", "limit": 5000, "window": 5}).json()
    some = values["results"]["values"][100]
    for stamp in (str(some["timestamp"]), str(some["timestamp"] * 10**6)):
        exact = client.get(path, {"timespan": "minute", "window": 5, "timestamp": stamp})
        assert exact.json()["results"]["values"] == [some]
    day = datetime.fromtimestamp(some["timestamp"] / 1000, UTC).date()
    that_day = client.get(path, {"timespan": "minute", "window": 5, "limit": 5000,
                                 "timestamp": day.isoformat()}).json()  # fmt: skip
    assert [v for v in values["results"]["values"]
            if datetime.fromtimestamp(v["timestamp"] / 1000, UTC).date() == day] == \
        that_day["results"]["values"]  # fmt: skip
    assert client.get(path, {"timestamp.gt": "2199-01-01"}).json()["results"]["values"] == []


def test_the_underlying_aggregates_are_the_bars_used(client, history):
    params = {"timespan": "hour", "window": 3, "expand_underlying": "true"}
    answer = client.get(f"{INDICATORS}/ema/AAPL", params).json()
    underlying = answer["results"]["underlying"]
    by_hour = dict(history["hour"])
    assert [a["t"] for a in underlying["aggregates"]] == list(by_hour)  # every hour: warm-up
    assert all({k: a[k] for k in "tohlcvn"} == as_agg(by_hour[a["t"]])
               for a in underlying["aggregates"])  # fmt: skip
    assert results(pages(client, relative(underlying["url"]))) == underlying["aggregates"]
    plain = client.get(f"{INDICATORS}/ema/AAPL", {"timespan": "hour", "window": 3}).json()
    assert set(plain["results"]["underlying"]) == {"url"}
    assert plain["results"]["values"] == answer["results"]["values"]


def test_a_symbol_without_bars_has_no_values_but_an_underlying(client, stored):
    for kind in ("sma", "ema", "rsi", "macd"):
        answer = client.get(f"{INDICATORS}/{kind}/MSFT", {"expand_underlying": "true"}).json()
        assert answer["results"]["values"] == []
        assert answer["results"]["underlying"]["aggregates"] == []
        assert answer["results"]["underlying"]["url"].startswith("http")
