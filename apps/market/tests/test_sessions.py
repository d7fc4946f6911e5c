"""Sessions (docs/contracts.md#sessions): the UTC day for the simulator, an exchange's
calendar for a real symbol. The calendar facts below are the NYSE's published hours (9:30 to
16:00 New York time; 13:00 the day after Thanksgiving and on Christmas Eve; closed on
Christmas Day), not values read back from the code."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest
from apps.market import selectors, sessions
from apps.market.models import Symbol
from apps.ops.timestamps import epoch_micros


def us(text: str) -> int:
    return epoch_micros(datetime.fromisoformat(text))


def day(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


NYSE = sessions.clock("XNYS")
NYSE_EXTENDED = sessions.clock("XNYS+ext")


def test_the_utc_day_is_every_day_around_the_clock():
    utc = sessions.clock("")
    assert utc.session_of(us("2026-12-05T23:59:59+00:00")) == day("2026-12-05")  # a Saturday
    assert utc.window(day("2026-12-05")) == (us("2026-12-05T00:00:00+00:00"),
                                              us("2026-12-06T00:00:00+00:00"))  # fmt: skip
    assert utc.label(day("2026-12-05")) == datetime(2026, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "session"),
    [
        ("2026-12-04T14:29:59+00:00", None),  # Friday, before the 9:30 EST open
        ("2026-12-04T14:30:00+00:00", "2026-12-04"),
        ("2026-12-04T20:59:59+00:00", "2026-12-04"),
        ("2026-12-04T21:00:00+00:00", None),  # 16:00 EST: closed
        ("2026-07-02T13:30:00+00:00", "2026-07-02"),  # summer time: 9:30 EDT
        ("2026-11-27T17:59:00+00:00", "2026-11-27"),  # the day after Thanksgiving...
        ("2026-11-27T18:00:00+00:00", None),  # ... closes at 13:00
        ("2026-12-25T15:00:00+00:00", None),  # Christmas
        ("2026-12-05T15:00:00+00:00", None),  # Saturday
    ],
)
def test_an_exchange_session_is_its_regular_hours_on_its_trading_days(at, session):
    assert NYSE.session_of(us(at)) == (None if session is None else day(session))


def test_extended_hours_take_in_the_whole_local_day_and_sessions_are_dated_locally():
    assert NYSE_EXTENDED.session_of(us("2026-12-04T09:00:00+00:00")) == day("2026-12-04")
    assert NYSE_EXTENDED.session_of(us("2026-12-05T04:59:00+00:00")) == day("2026-12-04")
    assert NYSE_EXTENDED.session_of(us("2026-12-05T05:00:00+00:00")) is None  # Saturday
    assert NYSE.label(day("2026-12-04")) == datetime(2026, 12, 4, 5, tzinfo=UTC)  # midnight EST
    assert NYSE.previous(day("2026-12-28")) == day("2026-12-24")  # over Christmas and a weekend
    assert NYSE.sessions_dated(us("2026-12-04T00:00:00+00:00"),
                               us("2026-12-08T00:00:00+00:00")) == [day("2026-12-04"),
                                                                    day("2026-12-07")]  # fmt: skip


def test_an_unknown_calendar_is_refused_with_a_clear_error(db):
    symbol = Symbol(ticker="BAD", name="Bad", exchange="X", start_price=1.0, calendar="NOPE")
    with pytest.raises(Exception, match="no exchange calendar"):
        symbol.full_clean()


# Thursday 3 and Friday 4 December 2026 on the NYSE (EST: New York is UTC-5).
TICKS = [
    ("2026-12-03T15:00:00+00:00", 100.0, 10),  # Thursday, regular hours
    ("2026-12-03T20:59:00+00:00", 102.0, 5),  # its last regular minute
    ("2026-12-03T22:00:00+00:00", 103.0, 7),  # post-market
    ("2026-12-04T13:00:00+00:00", 104.0, 1),  # Friday pre-market
    ("2026-12-04T14:30:00+00:00", 105.0, 20),  # the open
    ("2026-12-04T16:00:00+00:00", 101.0, 3),
]


def nyse_symbol(ticker: str, *, extended: bool) -> None:
    Symbol.objects.create(ticker=ticker, name=ticker, exchange="NYSE", start_price=100.0,
                          calendar="XNYS", extended_hours=extended)  # fmt: skip


def ingest_ticks(ticker: str, *, rebuild_before_friday: bool, redis_client) -> None:
    for i, (at, price, size) in enumerate(TICKS):
        if rebuild_before_friday and i == 3:  # a new worker, nothing shared: from the database
            store.forget()
            redis_client.flushdb()
        ingest(TickBatch.from_rows([(ticker, datetime.fromisoformat(at), price, size)]))


def days_of(client, ticker: str) -> list[tuple]:
    answer = client.get(f"/api/v1/stocks/{ticker}/bars", {"interval": "1d", "limit": 10})
    assert answer.status_code == 200, answer.content
    return [(b["ts"], b["open"], b["high"], b["low"], b["close"], b["volume"])
            for b in answer.json()["results"]]  # fmt: skip


@pytest.mark.parametrize("rebuild", [False, True])
def test_change_and_daily_bars_follow_the_regular_session(
    db, redis_client, client, rebuild
):  # fmt: skip
    store.forget()
    nyse_symbol("NYSX", extended=False)
    ingest_ticks("NYSX", rebuild_before_friday=rebuild, redis_client=redis_client)
    price = client.get("/api/v1/stocks/NYSX/price").json()
    # Against Thursday's regular close (102), not its post-market print (103); Friday's
    # volume is its regular session's (20 + 3), without the pre-market trade.
    assert (price["price"], price["change"], price["volume"]) == (101.0, -1.0, 23)
    assert price["change_pct"] == pytest.approx(-1 / 102 * 100)
    assert days_of(client, "NYSX") == [
        ("2026-12-03T05:00:00Z", 100.0, 102.0, 100.0, 102.0, 15),
        ("2026-12-04T05:00:00Z", 105.0, 105.0, 101.0, 101.0, 23),
    ]
    store.forget()


def test_extended_hours_count_pre_and_post_market(db, redis_client, client):
    store.forget()
    nyse_symbol("NYSE2", extended=True)
    ingest_ticks("NYSE2", rebuild_before_friday=False, redis_client=redis_client)
    price = client.get("/api/v1/stocks/NYSE2/price").json()
    assert (price["change"], price["volume"]) == (-2.0, 24)  # against 103; 1 + 20 + 3
    assert days_of(client, "NYSE2") == [
        ("2026-12-03T05:00:00Z", 100.0, 103.0, 100.0, 103.0, 22),
        ("2026-12-04T05:00:00Z", 104.0, 105.0, 101.0, 101.0, 24),
    ]
    store.forget()


def test_the_gateway_serves_the_same_sessions(db, redis_client, client):
    store.forget()
    nyse_symbol("NYSX", extended=False)
    ingest_ticks("NYSX", rebuild_before_friday=False, redis_client=redis_client)
    aggs = client.get("/v2/aggs/ticker/NYSX/range/1/day/2026-12-01/2026-12-31").json()
    assert [(r["t"], r["o"], r["c"], r["v"]) for r in aggs["results"]] == [
        (int(datetime(2026, 12, 3, 5, tzinfo=UTC).timestamp() * 1000), 100.0, 102.0, 15),
        (int(datetime(2026, 12, 4, 5, tzinfo=UTC).timestamp() * 1000), 105.0, 101.0, 23),
    ]
    month = client.get("/v2/aggs/ticker/NYSX/range/1/month/2026-12-01/2026-12-31").json()
    assert [(r["t"], r["o"], r["h"], r["l"], r["c"], r["v"]) for r in month["results"]] == [
        (int(datetime(2026, 12, 1, 5, tzinfo=UTC).timestamp() * 1000), 100.0, 105.0, 100.0,
         101.0, 38),
    ]  # fmt: skip
    grouped = client.get("/v2/aggs/grouped/locale/us/market/stocks/2026-12-04").json()
    (friday,) = [r for r in grouped["results"] if r["T"] == "NYSX"]
    assert (friday["o"], friday["c"], friday["v"]) == (105.0, 101.0, 23)
    # On Friday afternoon the snapshot's day is Friday's session and prevDay Thursday's.
    bars = selectors.snapshot_bars(tickers=["NYSX"],
                                   now=datetime(2026, 12, 4, 18, tzinfo=UTC))["NYSX"]  # fmt: skip
    assert (bars.day.close, bars.day.volume) == (101.0, 23)
    assert (bars.prev_day.ts, bars.prev_day.close) == (datetime(2026, 12, 3, 5, tzinfo=UTC),
                                                      102.0)  # fmt: skip
    assert bars.minute.ts == datetime(2026, 12, 4, 16, tzinfo=UTC)
    # Saturday: the latest session is still Friday's.
    saturday_noon = datetime(2026, 12, 5, 12, tzinfo=UTC)
    saturday = selectors.snapshot_bars(tickers=["NYSX"], now=saturday_noon)["NYSX"]
    assert saturday.day == bars.day
    assert saturday.prev_day == bars.prev_day
    store.forget()


def test_a_simulated_symbol_keeps_the_utc_day(market, redis_client, client):
    store.forget()
    thursday = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)
    ingest(TickBatch.from_rows([("AAPL", thursday, 100.0, 10)]))
    ingest(TickBatch.from_rows([("AAPL", thursday + timedelta(hours=2), 104.0, 4)]))
    price = client.get("/api/v1/stocks/AAPL/price").json()
    assert (price["change"], price["volume"]) == (4.0, 4)  # Friday 01:00 UTC: a new session
    assert [d[0] for d in days_of(client, "AAPL")] == ["2026-12-03T00:00:00Z",
                                                       "2026-12-04T00:00:00Z"]  # fmt: skip
    store.forget()
