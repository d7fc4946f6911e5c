"""`manage.py backfill --source` (docs/sources.md#backfill-from-a-vendor): a vendor's minute
history, loaded as a user would load it. Alpaca's is the loopback AlpacaServer
(apps/testing/alpaca.py) with bars made here, paged small; Polygon/Massive's is a second
MarketFlux (apps/testing/vendor.py) whose `/v2/aggs` serves the bars it stored. Expected
values are the bars the vendor holds and sums of them worked out here."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from django.core.management import CommandError, call_command, get_commands
from rest_framework.test import APIClient

from apps.ingest.pipeline import TickBatch, ingest
from apps.market import keys
from apps.market.models import Bar, Source, Symbol, Tick
from apps.ops.timestamps import UNIX_EPOCH
from apps.sources.live import polygon
from apps.sources.live.alpaca import AlpacaFeed
from apps.sources.live.feeds import HTTP_RETRIES, FeedConfig
from apps.testing import BASE_DIR
from apps.testing.alpaca import AlpacaServer
from apps.testing.vendor import vendor_instance

pytestmark = pytest.mark.django_db

KEY, SECRET = "AKBACKFILL", "backfill-secret"
KEY_ENV, SECRET_ENV = "TEST_ALPACA_KEY", "TEST_ALPACA_SECRET"
TICKERS = ["AAPL", "MSFT"]
PAGE = 500  # bars a page of the loopback server's history holds
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def minute_of(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def day_of(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def made_bars(now: datetime, seed: int) -> dict[str, list[dict]]:
    """Two days of minute bars a symbol, 10 minutes clear of either end of the window a
    `--days 2` run started now asks for, with one minute in 20 missing (no trade)."""
    rng = np.random.default_rng(seed)
    first, last = minute_of(now) - 2 * DAY + 10 * MINUTE, minute_of(now) - 10 * MINUTE
    out: dict[str, list[dict]] = {}
    for ticker in TICKERS:
        bars, close, at = [], 100.0, first
        while at <= last:
            if rng.random() >= 0.05:
                open_ = close
                close = round(open_ * math.exp(rng.normal(0, 0.002)), 2)
                high = round(max(open_, close) + rng.integers(0, 20) / 100, 2)
                low = round(min(open_, close) - rng.integers(0, 20) / 100, 2)
                bars.append({"t": at, "o": open_, "h": high, "l": low, "c": close,
                             "v": int(rng.integers(100, 5000)), "n": int(rng.integers(1, 40)),
                             "vw": round((high + low + close) / 3, 4)})  # fmt: skip
            at += MINUTE
        out[ticker] = bars
    return out


def as_rows(bars: list[dict]) -> list[tuple]:
    return [(b["t"], b["o"], b["h"], b["l"], b["c"], b["v"], b["n"]) for b in bars]


def stored_minutes(ticker: str) -> list[tuple]:
    rows = Bar.objects.filter(symbol_id=ticker, interval="1m").order_by("ts")
    return list(rows.values_list("ts", "open", "high", "low", "close", "volume", "trades"))


def summed(bars: list[dict], step: timedelta) -> list[tuple]:
    """Longer bars by hand: per bucket the first open, the extremes, the last close and the
    volumes summed (buckets start at midnight UTC)."""
    buckets: dict[datetime, list[dict]] = {}
    for bar in bars:
        start = day_of(bar["t"]) + ((bar["t"] - day_of(bar["t"])) // step) * step
        buckets.setdefault(start, []).append(bar)
    return [(start, group[0]["o"], max(b["h"] for b in group), min(b["l"] for b in group),
             group[-1]["c"], sum(b["v"] for b in group))
            for start, group in sorted(buckets.items())]  # fmt: skip


def api_bars(ticker: str, interval: str, start: datetime) -> list[tuple]:
    params = {"interval": interval, "start": start.isoformat(), "limit": 5000}
    answer = APIClient().get(f"/api/v1/stocks/{ticker}/bars", params)
    assert answer.status_code == 200, answer.content[:300]
    return [(datetime.fromisoformat(b["ts"]), b["open"], b["high"], b["low"], b["close"],
             b["volume"]) for b in answer.json()["results"]]  # fmt: skip


def backfill(name: str, days: int = 2, **options) -> str:
    out = io.StringIO()
    call_command("backfill", source=name, days=days, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def checkpoint(redis_client, name: str) -> dict[str, list[tuple[datetime, datetime]]]:
    raw = redis_client.hgetall(keys.source_backfill(name))
    return {
        s.decode(): [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in
                     orjson.loads(v)]
        for s, v in raw.items()
    }  # fmt: skip


@pytest.fixture
def alpaca(fresh_state, monkeypatch) -> Iterator[AlpacaServer]:
    """The loopback server, paging at PAGE bars, answering 429 with `Retry-After: 0` (the
    feed's retries then wait nothing), and a Source of it with these two symbols."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with AlpacaServer(key=KEY, secret=SECRET, page_size=PAGE) as server:
        server.retry_after = 0
        source = Source.objects.create(
            name="alpaca-test", kind=Source.ALPACA, url=server.stream_url(),
            rest_url=server.rest_url, key_env=KEY_ENV, secret_env=SECRET_ENV,
        )  # fmt: skip
        for ticker in TICKERS:
            Symbol.objects.create(ticker=ticker, name=ticker, exchange="NASDAQ", source=source,
                                  start_price=100.0)  # fmt: skip
        yield server


def load(server: AlpacaServer, now: datetime, seed: int) -> dict[str, list[dict]]:
    bars = made_bars(now, seed)
    for ticker, rows in bars.items():
        server.load_bars(ticker, rows)
    return bars


def test_the_vendors_minutes_become_ours_with_longer_bars_and_a_second_run_adds_nothing(
    alpaca, redis_client
):
    now = datetime.now(UTC)
    loaded = load(alpaca, now, seed=1)
    # A live price newer than the history: the backfill must leave it.
    newer = {"ts": (now + HOUR).isoformat(), "price": 1.0}
    redis_client.set(keys.hot("MSFT"), orjson.dumps(newer))
    alpaca.rate_limit_next(2)  # the vendor's rate limit, twice: the feed tries again

    said = backfill("alpaca-test")

    total = sum(len(rows) for rows in loaded.values())
    assert f"{total:,} 1-minute bars from alpaca, {total:,} new" in said
    for ticker, rows in loaded.items():
        assert stored_minutes(ticker) == as_rows(rows)
        start = day_of(rows[0]["t"])
        assert api_bars(ticker, "1h", start) == summed(rows, HOUR)
        assert api_bars(ticker, "1d", start) == summed(rows, DAY)
    assert Tick.objects.count() == total  # one tick a bar
    # Paging: each symbol's window in one stream of PAGE-bar pages, plus the two 429s.
    requests = alpaca.rest_requests
    assert [r.status for r in requests].count(429) == 2
    pages = sum(math.ceil(len(rows) / PAGE) for rows in loaded.values())
    assert len([r for r in requests if r.status == 200]) == pages
    assert {r.params["timeframe"] for r in requests} == {"1Min"}
    # The hot state: AAPL's price is its last bar's close; MSFT's newer one stays.
    aapl = orjson.loads(redis_client.get(keys.hot("AAPL")))
    assert (datetime.fromisoformat(aapl["ts"]), aapl["price"]) == (
        loaded["AAPL"][-1]["t"], loaded["AAPL"][-1]["c"],
    )  # fmt: skip
    assert orjson.loads(redis_client.get(keys.hot("MSFT"))) == newer

    before = len(requests)
    again = backfill("alpaca-test")
    assert ", 0 new," in again
    assert Tick.objects.count() == total
    for ticker, rows in loaded.items():
        assert stored_minutes(ticker) == as_rows(rows)
    # The second run asks only for the newest minutes, which a vendor may publish late.
    later = alpaca.rest_requests[before:]
    assert len(later) == len(TICKERS)
    assert all(
        datetime.fromisoformat(r.params["start"]) >= now - timedelta(minutes=16) for r in later
    )


def test_a_run_stopped_by_the_vendor_continues_where_it_stopped(alpaca, redis_client):
    now = datetime.now(UTC)
    loaded = load(alpaca, now, seed=2)
    first, second = TICKERS
    # All of the first symbol's pages and four of the second's, then a rate limit that
    # outlasts the feed's retries.
    pages_first = math.ceil(len(loaded[first]) / PAGE)
    alpaca.rate_limit_after(pages_first + 4, count=HTTP_RETRIES + 1)

    with pytest.raises(CommandError, match=r"answered 429.*run the backfill again"):
        backfill("alpaca-test")

    # The second symbol has every day whose bars all came (the 2,000th bar's day did not
    # finish coming), and the checkpoint says so.
    stopped = day_of(loaded[second][4 * PAGE - 1]["t"])
    assert stored_minutes(first) == as_rows(loaded[first])
    assert stored_minutes(second) == as_rows([b for b in loaded[second] if b["t"] < stopped])
    marks = checkpoint(redis_client, "alpaca-test")
    ((start, settled),) = marks[first]
    assert settled - start == 2 * DAY - timedelta(minutes=15)
    assert marks[second] == [(start, stopped)]

    before = len(alpaca.rest_requests)
    said = backfill("alpaca-test")
    resumed = alpaca.rest_requests[before:]
    asked = {(r.params["symbols"], datetime.fromisoformat(r.params["start"])) for r in resumed}
    assert asked == {(first, settled), (second, stopped)}
    rest = len([b for b in loaded[second] if b["t"] >= stopped])
    assert f", {rest:,} new," in said
    for ticker, rows in loaded.items():
        assert stored_minutes(ticker) == as_rows(rows)
    assert Tick.objects.count() == sum(len(rows) for rows in loaded.values())
    assert checkpoint(redis_client, "alpaca-test") == {first: [(start, settled)],
                                                       second: [(start, settled)]}  # fmt: skip


def test_a_minute_that_has_a_bar_already_keeps_it(alpaca):
    """A live tick stored half-way through a minute: the vendor's bar for that minute would
    count its trades twice, so the minute stays as it was."""
    at = minute_of(datetime.now(UTC)) - HOUR
    bars = [{"t": at + k * MINUTE, "o": 10.0 + k, "h": 11.0 + k, "l": 9.0 + k, "c": 10.5 + k,
             "v": 300, "n": 3} for k in range(3)]  # fmt: skip
    alpaca.load_bars("AAPL", bars)
    ingest(TickBatch.from_rows([("AAPL", at + MINUTE + timedelta(seconds=30), 50.0, 7)]),
           live=False)  # fmt: skip

    said = backfill("alpaca-test", days=1)

    assert "3 1-minute bars from alpaca, 2 new, 1 for minutes already stored" in said
    live = (at + MINUTE, 50.0, 50.0, 50.0, 50.0, 7, 1)
    assert stored_minutes("AAPL") == [as_rows(bars)[0], live, as_rows(bars)[2]]


def test_alpacas_history_ends_before_the_end_asked_for(alpaca):
    """The vendor's `end` is inclusive: the feed asks up to the last nanosecond before."""
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    bars = [{"t": at + k * MINUTE, "o": 10.0, "h": 10.0, "l": 10.0, "c": 10.0, "v": 5, "n": 1}
            for k in range(3)]  # fmt: skip
    alpaca.load_bars("AAPL", bars)
    feed = AlpacaFeed(FeedConfig("a", "alpaca", "", alpaca.rest_url, "iex", KEY_ENV, SECRET_ENV))
    got = list(feed.history_bars("AAPL", at, at + 2 * MINUTE))
    assert [UNIX_EPOCH + timedelta(microseconds=b.ns // 1000) for b in got] == [at, at + MINUTE]


def test_the_polygon_vendors_minutes_become_ours(db, fresh_state, tmp_path, monkeypatch):
    with vendor_instance(tmp_path) as vendor:
        vendor.processes.stop("beat")  # its market closes: the record is final
        env = vendor.processes.env(DATABASE_URL=vendor.database_url, REDIS_URL=vendor.redis_url)
        subprocess.run(
            [sys.executable, "manage.py", "backfill", "--days", "2", "--symbols", "AAPL,MSFT"],
            cwd=BASE_DIR, env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        source = Source.objects.create(name="massive", kind=Source.POLYGON,
                                       rest_url=vendor.url, key_env="VENDOR_KEY")  # fmt: skip
        for ticker in TICKERS:
            Symbol.objects.create(ticker=ticker, name=ticker, exchange="NASDAQ", source=source,
                                  start_price=100.0)  # fmt: skip
        monkeypatch.setenv("VENDOR_KEY", "any-key")
        monkeypatch.setattr(polygon, "PAGE", 1000)  # its next_url paging, a day in 2 pages
        before = datetime.now(UTC)
        said = backfill("massive", days=1)
        after = datetime.now(UTC)
        theirs = {
            (s, ts): tuple(rest)
            for s, ts, *rest in vendor.query(
                "SELECT symbol_id, ts, open, high, low, close, volume, trades FROM market_bar"
                " WHERE interval = '1m' AND symbol_id IN ('AAPL', 'MSFT')"
            )
        }
    ours = {
        (s, ts): tuple(rest)
        for s, ts, *rest in Bar.objects.filter(interval="1m").values_list(
            "symbol", "ts", "open", "high", "low", "close", "volume", "trades"
        )
    }
    # The window is the day before the minute the run started in; its edges are known to
    # the minute the run took to start.
    assert all(minute_of(before) - DAY <= ts < minute_of(after) for _, ts in ours)
    # The vendor has every minute from two days back to its last (its market stopped then).
    lo, hi = minute_of(after) - DAY, min(minute_of(before), max(ts for _, ts in theirs) + MINUTE)
    inside = {k: v for k, v in theirs.items() if lo <= k[1] < hi}
    assert len(inside) == len(TICKERS) * ((hi - lo) // MINUTE) > 2 * 1400
    assert {k: v for k, v in ours.items() if k in inside} == inside
    assert all(theirs[k] == v for k, v in ours.items())
    assert f"{len(ours):,} new" in said


def test_the_backfill_command_is_the_sources_one():
    assert get_commands()["backfill"] == "apps.sources"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source": "nope"}, r"no source named 'nope'; vendor sources: alpaca-test \(alpaca\)"),
        ({"source": "files"}, r"'files' is Recorded files, not a vendor.*alpaca-test \(alpaca\)"),
        ({"source": "alpaca-test", "days": 0}, r"--days must be from 1 to 3650, not 0"),
        ({"source": "alpaca-test", "symbols": "AAPL,TSLA"}, r"not active symbols .*: TSLA"),
    ],
)
def test_bad_arguments_are_clear_errors(alpaca, options, message):
    Source.objects.create(name="files", kind=Source.FILES)
    options = {"days": 2, **options}
    with pytest.raises(CommandError, match=message):
        call_command("backfill", stdout=io.StringIO(), stderr=io.StringIO(), **options)
    assert not alpaca.rest_requests
    assert not Bar.objects.exists()


def test_a_vendor_gone_away_is_a_clear_error(alpaca):
    url = alpaca.rest_url
    alpaca.stop()  # nothing listens on its port any more
    with pytest.raises(CommandError, match=rf"could not reach {url} .*run the backfill again"):
        backfill("alpaca-test")


def test_missing_or_refused_credentials_name_the_variables(alpaca, monkeypatch):
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(CommandError) as missing:
        backfill("alpaca-test")
    assert str(missing.value) == (
        f"set {SECRET_ENV} in the environment: the API key and secret of source 'alpaca-test'"
        " (Alpaca market data v2 live feed)"
    )
    assert not alpaca.rest_requests
    monkeypatch.setenv(SECRET_ENV, "wrong")
    with pytest.raises(CommandError) as refused:
        backfill("alpaca-test")
    text = str(refused.value)
    assert "answered 403" in text
    assert f"check {KEY_ENV} and {SECRET_ENV}" in text
    assert "run_sources" not in str(missing.value) + text
    assert not Bar.objects.exists()
