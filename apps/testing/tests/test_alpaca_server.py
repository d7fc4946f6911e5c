"""The loopback Alpaca server (apps/testing/alpaca.py) speaks the vendor's market-data v2
protocol: the vendor's own client, alpaca-py, used as a user would, streams from it and
pages its history; a plain WebSocket client checks the JSON mode and the error frames the
SDK never shows. No test touches the network beyond 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apps.testing.alpaca import AlpacaServer
from apps.testing.waiting import wait_for

with warnings.catch_warnings():  # alpaca-py's data package imports websockets.legacy
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.common.exceptions import APIError
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.live import StockDataStream
    from alpaca.data.requests import StockBarsRequest, StockTradesRequest
    from alpaca.data.timeframe import TimeFrame

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # websockets.legacy

KEY, SECRET, BAD_SECRET = "AKLOOPBACK", "s3cret", "nope"
WAIT = 30.0  # the longest any wait here may take
AT = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
NS = 1_704_205_800_123_456_789  # 2024-01-02T14:30:00.123456789Z: more than a datetime holds


@pytest.fixture
def server() -> Iterator[AlpacaServer]:
    with AlpacaServer(key=KEY, secret=SECRET) as alpaca:
        yield alpaca


@contextlib.contextmanager
def running(stream: StockDataStream) -> Iterator[None]:
    """The SDK's stream on an event loop of its own thread, as `stream.run()` would run it;
    cancelled and closed on the way out (its own `stop()` polls only every 5 s)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="alpaca-py", daemon=True)
    thread.start()

    async def start() -> asyncio.Task:
        return asyncio.get_running_loop().create_task(stream._run_forever())

    async def finish(task: asyncio.Task) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.close()

    try:
        task = asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT)
        try:
            yield
        finally:
            asyncio.run_coroutine_threadsafe(finish(task), loop).result(WAIT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()


def collecting(stream: StockDataStream, **symbols: tuple[str, ...]) -> dict[str, list]:
    """Subscribe a handler that keeps what it gets to each channel named (trades=...)."""
    got: dict[str, list] = {}
    for channel, names in symbols.items():
        got[channel] = kept = []

        async def keep(item: Any, kept: list = kept) -> None:
            kept.append(item)

        getattr(stream, f"subscribe_{channel}")(keep, *names)
    return got


def trade(symbol: str, n: int, t: datetime | int) -> dict[str, Any]:
    return {"S": symbol, "i": 1000 + n, "x": "V", "p": 187.5 + n / 100, "s": 100 + n,
            "c": ["@", "I"], "t": t, "z": "C"}  # fmt: skip


def quote(symbol: str, n: int, t: datetime) -> dict[str, Any]:
    return {"S": symbol, "bx": "V", "bp": 187.1 + n / 100, "bs": 3, "ax": "Q",
            "ap": 187.2 + n / 100, "as": 5 + n, "c": ["R"], "t": t, "z": "C"}  # fmt: skip


def bar(symbol: str, n: int, t: datetime) -> dict[str, Any]:
    base = 100.0 + n
    return {"S": symbol, "o": base, "h": base + 1.25, "l": base - 0.5, "c": base + 0.75,
            "v": 1200 + n, "vw": base + 0.3125, "n": 17 + n, "t": t}  # fmt: skip


def as_trade(t: Any) -> tuple:
    return (t.symbol, t.price, t.size, t.timestamp, t.id, t.exchange, t.conditions, t.tape)


def as_quote(q: Any) -> tuple:
    return (q.symbol, q.bid_exchange, q.bid_price, q.bid_size, q.ask_exchange, q.ask_price,
            q.ask_size, q.conditions, q.timestamp, q.tape)  # fmt: skip


def as_bar(b: Any) -> tuple:
    return (b.symbol, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count,
            b.timestamp)  # fmt: skip


def when(t: datetime | int) -> datetime:
    """What alpaca-py makes of a time: an aware UTC datetime, nanoseconds cut to µs."""
    if isinstance(t, int):
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t // 1000)
    return t


def expected_trade(m: dict[str, Any]) -> tuple:
    return (m["S"], m["p"], m["s"], when(m["t"]), m["i"], m["x"], m["c"], m["z"])


def expected_quote(m: dict[str, Any]) -> tuple:
    return (m["S"], m["bx"], m["bp"], m["bs"], m["ax"], m["ap"], m["as"], m["c"], m["t"], m["z"])


def expected_bar(m: dict[str, Any]) -> tuple:
    return (m["S"], m["o"], m["h"], m["l"], m["c"], m["v"], m["vw"], m["n"], m["t"])


# --- The stream, through alpaca-py's StockDataStream -----------------------------------------


def test_sdk_stream_gets_exactly_the_trades_quotes_and_bars_it_subscribed_to(server):
    stream = StockDataStream(KEY, SECRET, url_override=server.stream_url("iex"))
    got = collecting(stream, trades=("AAPL", "MSFT"), quotes=("AAPL",), bars=("*",))
    trades = [
        trade("AAPL", 1, AT + timedelta(microseconds=123_456)),
        trade("MSFT", 2, AT + timedelta(seconds=1, microseconds=7)),
        trade("AAPL", 3, NS),
    ]
    quotes = [quote("AAPL", 1, AT + timedelta(microseconds=999_999))]
    bars = [bar("NVDA", 1, AT), bar("AAPL", 2, AT + timedelta(minutes=1))]

    with running(stream):
        client = server.wait_subscribed(trades=["AAPL", "MSFT"], quotes=["AAPL"], bars=["*"])
        assert server.send_trades([trade("TSLA", 9, AT)]) == 0  # nobody asked for TSLA
        assert server.send_quotes([quote("MSFT", 9, AT)]) == 0  # MSFT only for trades
        assert server.send_trades(trades) == 3
        assert server.send_quotes(quotes) == 1
        assert server.send_bars(bars) == 2
        wait_for(lambda: len(got["bars"]) == 2, timeout=WAIT, what="the bars")

    assert [as_trade(t) for t in got["trades"]] == [expected_trade(m) for m in trades]
    assert [as_quote(q) for q in got["quotes"]] == [expected_quote(m) for m in quotes]
    assert [as_bar(b) for b in got["bars"]] == [expected_bar(m) for m in bars]
    assert got["trades"][2].timestamp == datetime(2024, 1, 2, 14, 30, 0, 123_456, tzinfo=UTC)
    # What the SDK sent and how: msgpack, one auth, the whole subscription at once.
    assert client.encoding == "msgpack"
    assert client.headers["User-Agent"].startswith("APCA-PY/")
    assert server.messages("auth") == [{"action": "auth", "key": KEY, "secret": SECRET}]
    assert server.messages("subscribe") == [
        {"trades": ["AAPL", "MSFT"], "quotes": ["AAPL"], "bars": ["*"], "action": "subscribe"}
    ]
    assert (len(server.clients), server.auths) == (1, 1)


def test_sdk_stream_with_a_bad_secret_retries_auth_and_gets_no_data(server, caplog):
    stream = StockDataStream(KEY, BAD_SECRET, url_override=server.stream_url("iex"))
    got = collecting(stream, trades=("AAPL",))
    with caplog.at_level(logging.ERROR, logger="alpaca"), running(stream):
        wait_for(lambda: server.auth_attempts >= 2, timeout=WAIT, what="a second auth attempt")
        assert server.send_trades([trade("AAPL", 1, AT)]) == 0

    assert server.auths == 0
    assert len(server.clients) >= 2  # it reconnected after the 402 closed the first
    assert {m["secret"] for m in server.messages("auth")} == {BAD_SECRET}
    assert server.messages("subscribe") == []
    assert got["trades"] == []
    assert "auth failed" in caplog.text  # alpaca-py logs the ValueError and backs off


def test_sdk_stream_skips_malformed_frames_and_keeps_the_connection(server):
    server.malformed = True
    stream = StockDataStream(KEY, SECRET, url_override=server.stream_url("iex"))
    got = collecting(stream, trades=("AAPL",))
    trades = [trade("AAPL", n, AT + timedelta(seconds=n)) for n in range(3)]
    with running(stream):
        server.wait_subscribed(trades=["AAPL"])
        server.send_trades(trades[:1])
        server.send_trades(trades[1:])
        wait_for(lambda: len(got["trades"]) == 3, timeout=WAIT, what="the good trades")

    assert [as_trade(t) for t in got["trades"]] == [expected_trade(m) for m in trades]
    assert (len(server.clients), server.auths) == (1, 1)


def test_sdk_stream_reconnects_and_resubscribes_after_the_connection_drops(server):
    stream = StockDataStream(KEY, SECRET, url_override=server.stream_url("iex"))
    got = collecting(stream, trades=("AAPL",), bars=("MSFT",))
    with running(stream):
        first = server.wait_subscribed(trades=["AAPL"], bars=["MSFT"])
        server.send_trades([trade("AAPL", 1, AT)])
        wait_for(lambda: got["trades"], timeout=WAIT, what="the first trade")
        assert server.kill_connections() == 1
        second = server.wait_subscribed(trades=["AAPL"], bars=["MSFT"])
        server.send_trades([trade("AAPL", 2, AT + timedelta(seconds=1))])
        wait_for(lambda: len(got["trades"]) == 2, timeout=WAIT, what="the trade after it")

    assert second is not first
    assert server.auths == 2
    assert [t.id for t in got["trades"]] == [1001, 1002]
    assert len(server.messages("subscribe")) == 2


# --- The stream, byte by byte (JSON mode and the frames the SDK hides) ----------------------


def json_client(server: AlpacaServer, feed: str = "iex") -> ClientConnection:
    return connect(
        server.stream_url(feed),
        additional_headers={"Content-Type": "application/json"},
        open_timeout=WAIT,
        close_timeout=5,
    )


def receive(ws: ClientConnection) -> list[dict[str, Any]]:
    frame = ws.recv(timeout=WAIT)
    assert isinstance(frame, str)  # JSON mode: text frames
    return json.loads(frame)


def ask(ws: ClientConnection, message: dict[str, Any] | str) -> list[dict[str, Any]]:
    ws.send(message if isinstance(message, str) else json.dumps(message))
    return receive(ws)


def error(code: int, msg: str) -> list[dict[str, Any]]:
    return [{"T": "error", "code": code, "msg": msg}]


def subscription(**channels: list[str]) -> list[dict[str, Any]]:
    names = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
    message: dict[str, Any] = {"T": "subscription"}
    message.update({name: channels.get(name, []) for name in names})
    message["corrections"] = message["cancelErrors"] = channels.get("trades", [])
    return [message]


AUTH = {"action": "auth", "key": KEY, "secret": SECRET}


def test_json_mode_handshake_subscription_set_and_errors(server):
    with json_client(server, "sip") as ws:
        assert receive(ws) == [{"T": "success", "msg": "connected"}]
        assert ask(ws, {"action": "subscribe", "trades": ["AAPL"]}) == error(
            401, "not authenticated"
        )
        assert ask(ws, "hello") == error(400, "invalid syntax")
        assert ask(ws, AUTH) == [{"T": "success", "msg": "authenticated"}]
        assert ask(ws, AUTH) == error(403, "already authenticated")
        assert ask(ws, {"action": "subscribe", "trades": ["aapl!"]}) == error(400, "invalid syntax")
        assert ask(
            ws,
            {"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL", "MSFT"], "bars": ["*"]},
        ) == subscription(trades=["AAPL"], quotes=["AAPL", "MSFT"], bars=["*"])
        assert ask(ws, {"action": "subscribe", "trades": ["MSFT"]}) == subscription(
            trades=["AAPL", "MSFT"], quotes=["AAPL", "MSFT"], bars=["*"]
        )
        assert ask(ws, {"action": "unsubscribe", "quotes": ["AAPL"]}) == subscription(
            trades=["AAPL", "MSFT"], quotes=["MSFT"], bars=["*"]
        )

        assert server.send_trades([trade("AAPL", 1, NS), trade("TSLA", 2, NS)]) == 1
        assert receive(ws) == [
            {"T": "t", "S": "AAPL", "i": 1001, "x": "V", "p": 187.51, "s": 101, "c": ["@", "I"],
             "t": "2024-01-02T14:30:00.123456789Z", "z": "C"}
        ]  # fmt: skip
        assert server.send_bars([bar("NVDA", 0, AT)]) == 1
        assert receive(ws) == [{"T": "b", **bar("NVDA", 0, AT), "t": "2024-01-02T14:30:00Z"}]

    assert server.clients[0].feed == "sip"
    assert server.clients[0].encoding == "json"


def test_json_mode_batches_several_messages_a_frame():
    with AlpacaServer(key=KEY, secret=SECRET, batch_size=10) as server, json_client(server) as ws:
        receive(ws)
        ask(ws, AUTH)
        ask(ws, {"action": "subscribe", "quotes": ["*"]})
        quotes = [quote("AAPL", n, AT + timedelta(milliseconds=n)) for n in range(12)]
        assert server.send_quotes(quotes) == 12
        frames = [receive(ws), receive(ws)]
    assert [len(frame) for frame in frames] == [10, 2]
    assert [m["ap"] for frame in frames for m in frame] == [q["ap"] for q in quotes]
    assert frames[0][1]["t"] == "2024-01-02T14:30:00.001Z"


def test_one_connection_per_key_and_endpoint(server):
    with (
        json_client(server) as first,
        json_client(server) as second,
        json_client(server, "sip") as other,
    ):
        for ws in (first, second, other):
            receive(ws)
        assert ask(first, AUTH) == [{"T": "success", "msg": "authenticated"}]
        assert ask(second, AUTH) == error(406, "connection limit exceeded")
        with pytest.raises(ConnectionClosed):
            second.recv(timeout=WAIT)
        assert ask(other, AUTH) == [{"T": "success", "msg": "authenticated"}]


def test_bad_credentials_get_402_and_the_connection_closes(server):
    with json_client(server) as ws:
        receive(ws)
        assert ask(ws, {**AUTH, "secret": BAD_SECRET}) == error(402, "auth failed")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
    server.auth_fails = True
    with json_client(server) as ws:
        receive(ws)
        assert ask(ws, AUTH) == error(402, "auth failed")
    assert (server.auth_attempts, server.auths) == (2, 0)


def test_no_auth_in_time_gets_404():
    with (
        AlpacaServer(key=KEY, secret=SECRET, auth_timeout=0.2) as server,
        json_client(server) as ws,
    ):
        receive(ws)
        assert receive(ws) == error(404, "auth timeout")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)


def test_symbol_limit_leaves_the_subscriptions_unchanged():
    with AlpacaServer(key=KEY, secret=SECRET, symbol_limit=2) as server, json_client(server) as ws:
        receive(ws)
        ask(ws, AUTH)
        assert ask(ws, {"action": "subscribe", "trades": ["AAPL", "MSFT"]}) == subscription(
            trades=["AAPL", "MSFT"]
        )
        assert ask(ws, {"action": "subscribe", "quotes": ["NVDA"]}) == error(
            405, "symbol limit exceeded"
        )
        assert server.open_connections[0].subscriptions["quotes"] == {}


def test_fault_modes_close_at_once_and_never_answer(server):
    server.close_at_once = True
    with json_client(server) as ws, pytest.raises(ConnectionClosed):
        ws.recv(timeout=WAIT)
    server.close_at_once = False
    server.never_answer = True
    with json_client(server) as ws, pytest.raises(TimeoutError):
        ws.recv(timeout=0.3)  # the WebSocket is open, and nothing comes
    assert len(server.clients) == 2


def test_malformed_mode_sends_junk_then_a_wrongly_typed_message_then_the_data(server):
    with json_client(server) as ws:
        receive(ws)
        ask(ws, AUTH)
        ask(ws, {"action": "subscribe", "trades": ["AAPL"]})
        server.malformed = True
        assert server.send_trades([trade("AAPL", 1, AT)]) == 1
        assert ws.recv(timeout=WAIT) == "{not json"
        assert receive(ws) == [
            {"T": "t", "S": "AAPL", "p": "n/a", "s": "n/a", "t": "yesterday", "o": "n/a",
             "bp": "n/a", "ap": "n/a"}
        ]  # fmt: skip
        assert receive(ws)[0]["p"] == 187.51


def test_an_outage_refuses_connections_then_ends(server):
    port = server.port
    server.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        json_client(server)
    server.accept_connections()
    with json_client(server) as ws:
        assert receive(ws) == [{"T": "success", "msg": "connected"}]
        server.refuse_connections(seconds=0.3)
        assert server.kill_connections() == 1
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)

    def answers() -> bool:
        try:
            with json_client(server) as ws:
                return receive(ws) == [{"T": "success", "msg": "connected"}]
        except OSError:
            return False

    wait_for(answers, timeout=WAIT, what="the stream back after the outage")
    assert server.port == port


# --- REST history, through alpaca-py's StockHistoricalDataClient -----------------------------

MINUTES = {
    "AAPL": [bar("AAPL", n, AT + timedelta(minutes=n)) for n in range(5)],
    "MSFT": [bar("MSFT", n, AT + timedelta(minutes=n)) for n in range(4)],
}
TRADES = {
    "AAPL": [trade("AAPL", n, NS + n * 1_000) for n in range(4)],
    "MSFT": [trade("MSFT", n, AT + timedelta(seconds=n)) for n in range(3)],
}


@pytest.fixture
def history() -> Iterator[AlpacaServer]:
    """The bars and trades above, served three to a page so that every fetch pages; and
    data outside the range or of another timeframe, which must not come back."""
    with AlpacaServer(key=KEY, secret=SECRET, page_size=3) as server:
        for symbol, bars in MINUTES.items():
            server.load_bars(symbol, bars)
            server.load_bars(symbol, [bar(symbol, 9, AT - timedelta(minutes=1))])
            server.load_bars(symbol, [bar(symbol, 8, AT)], timeframe="5Min")
        server.load_bars("NVDA", [bar("NVDA", 0, AT)])
        for symbol, trades in TRADES.items():
            server.load_trades(symbol, trades)
            server.load_trades(symbol, [trade(symbol, 9, AT + timedelta(hours=1))])
        yield server


def sdk(server: AlpacaServer, secret: str = SECRET) -> StockHistoricalDataClient:
    return StockHistoricalDataClient(KEY, secret, url_override=server.rest_url)


def test_sdk_pages_through_every_bar_of_both_symbols(history):
    request = StockBarsRequest(
        symbol_or_symbols=["AAPL", "MSFT"],
        timeframe=TimeFrame.Minute,
        start=AT,
        end=AT + timedelta(minutes=10),
        limit=1000,
    )
    result = sdk(history).get_stock_bars(request)

    assert {s: [as_bar(b) for b in bars] for s, bars in result.data.items()} == {
        s: [expected_bar(m) for m in bars] for s, bars in MINUTES.items()
    }
    pages = history.rest_requests
    assert [(r.path, r.status) for r in pages] == [("/v2/stocks/bars", 200)] * 3
    assert pages[0].params["symbols"] == "AAPL,MSFT"
    assert pages[0].params["timeframe"] == "1Min"
    assert pages[0].params["start"] == "2024-01-02T14:30:00+00:00"
    assert "page_token" not in pages[0].params
    assert all(r.params["page_token"] for r in pages[1:])
    assert pages[0].headers["APCA-API-KEY-ID"] == KEY


def test_sdk_limit_counts_across_symbols(history):
    request = StockBarsRequest(
        symbol_or_symbols=["MSFT", "AAPL"], timeframe=TimeFrame.Minute, start=AT, limit=7,
        end=AT + timedelta(minutes=10),
    )  # fmt: skip
    result = sdk(history).get_stock_bars(request)
    assert {s: len(bars) for s, bars in result.data.items()} == {"AAPL": 5, "MSFT": 2}
    assert [r.params["limit"] for r in history.rest_requests] == ["7", "4", "1"]


def test_sdk_pages_through_every_trade(history):
    request = StockTradesRequest(
        symbol_or_symbols=["AAPL", "MSFT"], start=AT, end=AT + timedelta(minutes=1)
    )
    result = sdk(history).get_stock_trades(request)
    assert {s: [as_trade(t) for t in trades] for s, trades in result.data.items()} == {
        s: [expected_trade(m) for m in trades] for s, trades in TRADES.items()
    }
    assert len(history.rest_requests) == 3


def test_sdk_retries_a_429_then_succeeds(history):
    history.rate_limit_next(1)
    request = StockTradesRequest(symbol_or_symbols="MSFT", start=AT, end=AT + timedelta(minutes=1))
    result = sdk(history).get_stock_trades(request)  # alpaca-py sleeps 3 s before the retry
    assert len(result.data["MSFT"]) == 3
    assert [r.status for r in history.rest_requests] == [429, 200]


def test_sdk_with_a_bad_secret_gets_api_error(history):
    request = StockTradesRequest(symbol_or_symbols="MSFT", start=AT)
    with pytest.raises(APIError) as raised:
        sdk(history, BAD_SECRET).get_stock_trades(request)
    assert raised.value.status_code == 403
    assert json.loads(str(raised.value)) == {"message": "forbidden"}


def get(server: AlpacaServer, path: str, **params: Any) -> requests.Response:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    return requests.get(f"{server.rest_url}{path}", params=params, headers=headers, timeout=WAIT)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"timeframe": "1Min"}, 400),  # no symbols
        ({"symbols": "AAPL"}, 400),  # no timeframe
        ({"symbols": "AAPL", "timeframe": "1Minute"}, 400),
        ({"symbols": "AAPL", "timeframe": "60Min"}, 422),
        ({"symbols": "AAPL", "timeframe": "5Month"}, 422),
        ({"symbols": "AAPL", "timeframe": "1Min", "limit": "0"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Min", "limit": "10001"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Min", "start": "yesterday"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Min", "start": "2024-01-02T14:30:00"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Min", "start": "2024-01-03", "end": "2024-01-02"}, 422),
        ({"symbols": "AAPL", "timeframe": "1Min", "sort": "up"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Min", "feed": "nasdaq"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Min", "adjustment": "raw,magic"}, 400),
        ({"symbols": "AAPL", "timeframe": "1Min", "page_token": "%%%"}, 400),
    ],
)
def test_bad_parameters_get_json_errors(history, params, status):
    response = get(history, "/v2/stocks/bars", **params)
    assert response.status_code == status
    assert response.json()["message"]


def test_dates_sort_timeframe_aliases_and_credentials(history):
    params = {"symbols": "AAPL", "timeframe": "1T", "start": "2024-01-02", "end": "2024-01-02",
              "sort": "desc", "feed": "sip", "adjustment": "split,dividend"}  # fmt: skip
    pages = [get(history, "/v2/stocks/bars", **params).json()]
    while token := pages[-1]["next_page_token"]:
        pages.append(get(history, "/v2/stocks/bars", **params, page_token=token).json())
    assert [len(page["bars"]["AAPL"]) for page in pages] == [3, 3]
    assert [b["t"] for page in pages for b in page["bars"]["AAPL"]] == [
        "2024-01-02T14:34:00Z", "2024-01-02T14:33:00Z", "2024-01-02T14:32:00Z",
        "2024-01-02T14:31:00Z", "2024-01-02T14:30:00Z", "2024-01-02T14:29:00Z",
    ]  # fmt: skip
    assert set(pages[0]["bars"]["AAPL"][0]) == {"t", "o", "h", "l", "c", "v", "vw", "n"}
    five = get(history, "/v2/stocks/bars", symbols="AAPL,NVDA", timeframe="5T", start="2024-01-02")
    assert five.json() == {"bars": {"AAPL": [{"t": "2024-01-02T14:30:00Z", **{
        k: v for k, v in bar("AAPL", 8, AT).items() if k not in ("S", "t")}}]},
        "next_page_token": None}  # fmt: skip
    none = get(history, "/v2/stocks/trades", symbols="TSLA", start="2024-01-02", end="2024-01-02")
    assert none.json() == {"trades": {}, "next_page_token": None}
    anonymous = requests.get(f"{history.rest_url}/v2/stocks/trades?symbols=AAPL", timeout=WAIT)
    assert (anonymous.status_code, anonymous.json()) == (403, {"message": "forbidden"})
