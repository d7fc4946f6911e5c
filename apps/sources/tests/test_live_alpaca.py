"""The Alpaca connector (apps/sources/live/alpaca.py through the connector) against the
loopback Alpaca server (apps/testing/alpaca.py, which alpaca-py's own client talks to): the
trades the server streams become this instance's ticks, one per symbol and 500 ms slot, with
the quote standing when the slot ended; a late trade reaches its tick and bar; a dropped
connection comes back, subscribes again and fills its gap from the server's REST trade
history, counting no trade twice; the source's report on /health says so.

The trades are from a day long past, all of a slot in one frame: the connector lets a slot
out as soon as a newer one has traded and the clock is past it, so what each tick holds does
not depend on when the test's frames arrive. Every expected value is worked out by hand
from the trades sent (their ids, prices and sizes are in the comments)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.market.models import Bar, Source, Symbol, Tick
from apps.sources.live.alpaca import AlpacaFeed
from apps.sources.live.feeds import Bar as FeedBar
from apps.sources.live.feeds import FeedConfig
from apps.testing.alpaca import AlpacaServer
from apps.testing.sources import RunningConnector
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)  # the connector stores on its own thread

KEY_ENV, SECRET_ENV = "TEST_ALPACA_KEY", "TEST_ALPACA_SECRET"  # the variables
KEY, SECRET = "AKLIVETEST", "live-secret"
TICKERS = ["AAPL", "MSFT"]
WAIT = 30.0
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
T0_NS = 1_772_461_800 * 10**9  # T0: 20,514 days and 52,200 s after the epoch
NO_QUOTE = (None, None, None, None)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def trade(symbol: str, i: int, ms: int, price: float, size: int) -> dict[str, Any]:
    """A trade as the vendor streams it and serves it from /v2/stocks/trades."""
    return {"S": symbol, "i": i, "x": "V", "p": price, "s": size, "c": ["@"],
            "t": T0_NS + ms * 1_000_000, "z": "C"}  # fmt: skip


def quote(symbol: str, ms: int, bid: float, ask: float, bid_lots: int, ask_lots: int) -> dict:
    """Sizes in round lots, as the vendor sends them (a tick stores shares: lots x 100)."""
    return {"S": symbol, "bx": "V", "bp": bid, "bs": bid_lots, "ax": "Q", "ap": ask,
            "as": ask_lots, "c": ["R"], "t": T0_NS + ms * 1_000_000, "z": "C"}  # fmt: skip


def ticks() -> dict[tuple[str, datetime], tuple]:
    rows = Tick.objects.values_list("symbol_id", "ts", "price", "size", "open", "high", "low",
                                    "trades", "bid", "ask", "bid_size", "ask_size")  # fmt: skip
    return {(s, ts): tuple(rest) for s, ts, *rest in rows}


def bars() -> dict[str, tuple]:
    rows = Bar.objects.filter(interval="1m").values_list(
        "symbol_id", "ts", "open", "high", "low", "close", "volume", "trades"
    )
    found = {}
    for symbol, ts, *rest in rows:
        assert ts == T0  # every trade here is of T0's minute
        found[symbol] = tuple(rest)
    return found


@pytest.fixture
def server():
    with AlpacaServer(key=KEY, secret=SECRET, batch_size=100) as alpaca:
        yield alpaca


@pytest.fixture
def source(server: AlpacaServer, monkeypatch: pytest.MonkeyPatch, fresh_state) -> Source:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    created = Source.objects.create(
        name="alpaca", kind=Source.ALPACA, url=server.stream_url(), rest_url=server.rest_url,
        key_env=KEY_ENV, secret_env=SECRET_ENV,
    )  # fmt: skip
    for ticker in TICKERS:
        Symbol.objects.create(ticker=ticker, name=ticker, exchange="NASDAQ", source=created,
                              start_price=100.0)  # fmt: skip
    return created


def test_trades_become_ticks_and_a_dropped_connection_is_filled_from_history(
    server, source, client
):
    subscription = {"action": "subscribe", "trades": TICKERS, "quotes": TICKERS, "bars": TICKERS}
    with RunningConnector(source, TICKERS) as running:
        server.wait_subscribed(trades=TICKERS, quotes=TICKERS, timeout=WAIT)
        assert server.messages("auth") == [{"action": "auth", "key": KEY, "secret": SECRET}]
        assert server.messages("subscribe") == [subscription]

        # --- 1. Trades and quotes on time -------------------------------------------------
        server.send_quotes([
            quote("AAPL", 100, 187.10, 187.14, 3, 5),
            quote("AAPL", 400, 187.12, 187.16, 2, 4),  # the newest before slot 0 ends
            quote("AAPL", 600, 187.20, 187.25, 1, 1),  # slot 1's, and it stands after
        ])  # fmt: skip
        server.send_trades([
            trade("AAPL", 1, 50, 187.00, 100),  # slot 0 (0-500 ms)
            trade("AAPL", 2, 200, 187.30, 50),
            trade("AAPL", 2, 200, 187.30, 50),  # a repeat: counted once
            trade("AAPL", 3, 350, 186.90, 20),
            trade("AAPL", 4, 450, 187.10, 30),
            trade("AAPL", 5, 700, 187.20, 10),  # slot 1; slot 2 has no trade
            trade("AAPL", 6, 1600, 187.40, 5),  # slot 3
            trade("AAPL", 7, 1900, 187.35, 15),
            trade("MSFT", 1, 100, 410.00, 7),  # ids are per symbol: MSFT's 1 is not AAPL's
            trade("MSFT", 2, 300, 409.50, 3),
        ])  # fmt: skip
        wait_for(lambda: Tick.objects.count() == 4, timeout=WAIT, what="the first 4 ticks")
        assert ticks() == {
            # 187.00, 187.30, 186.90, 187.10: last 187.10, 100+50+20+30 shares, 4 trades
            ("AAPL", at(0)): (187.10, 200, 187.00, 187.30, 186.90, 4, 187.12, 187.16, 200, 400),
            ("AAPL", at(500)): (187.20, 10, None, None, None, None, 187.20, 187.25, 100, 100),
            ("AAPL", at(1500)): (187.35, 20, 187.40, 187.40, 187.35, 2,
                                 187.20, 187.25, 100, 100),  # the 600 ms quote stands
            ("MSFT", at(0)): (409.50, 10, 410.00, 410.00, 409.50, 2, *NO_QUOTE),
        }  # fmt: skip
        assert bars() == {
            "AAPL": (187.00, 187.40, 186.90, 187.35, 230, 7),
            "MSFT": (410.00, 410.00, 409.50, 409.50, 10, 2),
        }

        # --- 2. Late trades: slots 0 and 2 are out (slot 3 has traded) ---------------------
        server.send_trades([
            trade("AAPL", 8, 250, 187.50, 40),  # into slot 0's tick: its high, not its price
            trade("AAPL", 8, 250, 187.50, 40),
            trade("AAPL", 9, 1200, 187.05, 8),  # slot 2 had no tick: a tick of its own
        ])  # fmt: skip
        wait_for(lambda: running.state.late == 2, timeout=WAIT, what="two late slots folded")
        assert ticks()[("AAPL", at(0))] == (
            187.10, 240, 187.00, 187.50, 186.90, 5, 187.12, 187.16, 200, 400
        )  # fmt: skip
        assert ticks()[("AAPL", at(1000))] == (187.05, 8, None, None, None, None, *NO_QUOTE)
        # 230+40+8 shares, 7+2 trades, high 187.50; the close is still slot 3's 187.35
        assert bars()["AAPL"] == (187.00, 187.50, 186.90, 187.35, 278, 9)

        # --- 3. The connection drops; the vendor's history has what was missed -------------
        server.load_trades("AAPL", [
            trade("AAPL", n, ms, p, s) for n, ms, p, s in [
                (1, 50, 187.00, 100), (2, 200, 187.30, 50), (3, 350, 186.90, 20),
                (4, 450, 187.10, 30), (8, 250, 187.50, 40), (5, 700, 187.20, 10),
                (9, 1200, 187.05, 8), (6, 1600, 187.40, 5),
                (7, 1900, 187.35, 15),  # the newest received: the gap starts at it
                (10, 2100, 187.60, 12), (11, 2300, 187.55, 8),  # slot 4, missed
            ]
        ])  # fmt: skip
        server.load_trades("MSFT", [
            trade("MSFT", 1, 100, 410.00, 7), trade("MSFT", 2, 300, 409.50, 3),
            trade("MSFT", 3, 1950, 409.80, 4),  # slot 3, out already: late, a tick of its own
            trade("MSFT", 4, 3000, 410.20, 6),  # slot 6, missed
        ])  # fmt: skip
        assert server.kill_connections() == 1
        server.wait_subscribed(trades=TICKERS, quotes=TICKERS, timeout=WAIT)
        wait_for(lambda: (running.state.last_gap or {}).get("filled_at"), timeout=WAIT,
                 what="the gap filled")  # fmt: skip
        wait_for(lambda: Tick.objects.count() == 8, timeout=WAIT, what="the gap's 3 ticks")

        # --- 4. The stream again: a repeat of a gap trade, a new trade with a fresh quote --
        server.send_quotes([quote("AAPL", 4800, 187.66, 187.72, 2, 2)])
        server.send_trades([
            trade("AAPL", 11, 2300, 187.55, 8),  # from the gap: counted once
            trade("AAPL", 12, 5000, 187.70, 9),  # slot 10
        ])  # fmt: skip
        wait_for(lambda: Tick.objects.count() == 9, timeout=WAIT, what="the stream's next tick")

        def reported() -> dict | None:
            state = client.get("/health").json().get("sources", {}).get("alpaca", {})
            return state if state.get("duplicates") == 4 and state.get("ticks") else None

        report = wait_for(reported, timeout=WAIT, what="the source's report on /health")

    assert len(server.clients) == 2
    assert server.messages("auth") == [{"action": "auth", "key": KEY, "secret": SECRET}] * 2
    assert server.messages("subscribe") == [subscription] * 2  # subscribed again
    (history,) = server.rest_requests
    assert (history.path, history.status) == ("/v2/stocks/trades", 200)
    assert history.params["symbols"] == "AAPL,MSFT"
    assert history.params["start"] == "2026-03-02T14:30:01.900000000Z"  # trade 7's time
    assert (history.headers["APCA-API-KEY-ID"], history.headers["APCA-API-SECRET-KEY"]) == (
        KEY, SECRET,
    )  # fmt: skip

    # Every trade once: AAPL 1-12 and MSFT 1-4, whatever way each came.
    assert ticks() == {
        ("AAPL", at(0)): (187.10, 240, 187.00, 187.50, 186.90, 5, 187.12, 187.16, 200, 400),
        ("AAPL", at(500)): (187.20, 10, None, None, None, None, 187.20, 187.25, 100, 100),
        ("AAPL", at(1000)): (187.05, 8, None, None, None, None, *NO_QUOTE),
        ("AAPL", at(1500)): (187.35, 20, 187.40, 187.40, 187.35, 2, 187.20, 187.25, 100, 100),
        # 10 and 11 from the history: no quote, the quotes of the gap are unknown
        ("AAPL", at(2000)): (187.55, 20, 187.60, 187.60, 187.55, 2, *NO_QUOTE),
        ("AAPL", at(5000)): (187.70, 9, None, None, None, None, 187.66, 187.72, 200, 200),
        ("MSFT", at(0)): (409.50, 10, 410.00, 410.00, 409.50, 2, *NO_QUOTE),
        ("MSFT", at(1500)): (409.80, 4, None, None, None, None, *NO_QUOTE),
        ("MSFT", at(3000)): (410.20, 6, None, None, None, None, *NO_QUOTE),
    }  # fmt: skip
    assert bars() == {
        # AAPL's 12 trades: first 187.00, high 187.70 (12), low 186.90 (3), last 187.70 (12);
        # 100+50+20+30+10+5+15+40+8+12+8+9 = 307 shares
        "AAPL": (187.00, 187.70, 186.90, 187.70, 307, 12),
        # MSFT's 4: 410.00, 409.50, 409.80, 410.20; 7+3+4+6 = 20 shares
        "MSFT": (410.00, 410.20, 409.50, 410.20, 20, 4),
    }

    assert report["connected"] is True
    assert report["kind"] == "alpaca"
    assert report["reconnects"] == 1
    # Repeats dropped: AAPL 2 and 8 on the stream, 7 in the history, 11 on the stream again.
    assert report["duplicates"] == 4
    assert "ConnectionClosed" in report["last_error"]["message"]
    gap = report["last_gap"]
    assert gap["from"] == "2026-03-02T14:30:01.900000Z"
    assert gap["trades"] == 4  # 5 rows from the history, trade 7 already counted
    assert "error" not in gap
    assert report["malformed"] == {}


def test_history_bars_end_before_the_end_asked_for(server, monkeypatch):
    """`end` is exclusive for history_bars and inclusive for the vendor: the request must
    end 1 ns before it, which a float of Unix ns (256 ns apart today) cannot say."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    feed = AlpacaFeed(
        FeedConfig(name="alpaca", kind=Source.ALPACA, url=server.stream_url(),
                   rest_url=server.rest_url, feed="iex", key_env=KEY_ENV, secret_env=SECRET_ENV)
    )  # fmt: skip
    minute = {"o": 187.0, "h": 187.5, "l": 186.5, "c": 187.25, "v": 1200, "n": 17, "vw": 187.1}
    server.load_bars("AAPL", [{**minute, "t": T0}, {**minute, "t": T0 + timedelta(minutes=1)}])

    got = list(feed.history_bars("AAPL", T0, T0 + timedelta(minutes=1)))

    assert got == [FeedBar("AAPL", T0_NS, 187.0, 187.5, 186.5, 187.25, 1200, 17)]
    (request,) = server.rest_requests
    assert (request.params["start"], request.params["end"]) == (
        "2026-03-02T14:30:00.000000000Z", "2026-03-02T14:30:59.999999999Z",
    )  # fmt: skip
