"""The WebSocket feeds (docs/contracts.md#websocket) through Channels' WebsocketCommunicator.

The real ASGI application, the real Redis channel layer and PostgreSQL: ticks enter through
`pipeline.ingest` in this process, which publishes them as the Celery worker would, and
the sockets see them as a client would. Expected values come from what the test ingested
and from the REST answers (the other door onto the same data), never from the code.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.ingest.pipeline import TickBatch, ingest
from apps.ingest.services import publish_overview_if_due
from apps.market import keys
from apps.market.models import Symbol
from apps.ops.redis_client import redis_client as app_redis
from marketflux_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0  # seconds to wait for anything the server should send
# docs/contracts.md#indicators: the indicators every tick and snapshot carries.
INDICATOR_FIELDS = {
    "sma_20", "ema_20", "rsi_14", "zscore_20", "anomaly",
    "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower",
}  # fmt: skip
MAX_MESSAGE = 64 * 1024  # the issue: messages over 64 KiB are refused


def parse_ts(text: str) -> datetime:
    assert text.endswith("Z"), text  # docs/contracts.md#messages: ISO 8601 UTC with a Z
    return datetime.fromisoformat(text)


class Feed:
    """Ticks for the real pipeline: a random walk per symbol, one slot every 0.5 s."""

    def __init__(self, tickers: list[str]):
        self.tickers = tickers
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.slot = 0
        self.prices: dict[str, float] = {}
        self.rng = random.Random(20260302)

    def rows(self, symbols: list[str], slots: int) -> list[tuple[str, datetime, float, int]]:
        rows = []
        for _ in range(slots):
            ts = self.start + timedelta(seconds=0.5 * self.slot)
            self.slot += 1
            for symbol in symbols:
                price = self.prices.get(symbol, 100.0) * (1 + self.rng.gauss(0, 0.003))
                self.prices[symbol] = price
                rows.append((symbol, ts, price, self.rng.randint(1, 900)))
        return rows

    async def ingest(self, symbols: list[str] | None = None, slots: int = 1) -> list[tuple]:
        """One batch through the real pipeline; returns its rows (symbol, ts, price, size)."""
        rows = self.rows(symbols or self.tickers, slots)
        await sync_to_async(ingest)(TickBatch.from_rows(rows))
        return rows

    async def ingest_with_overview(self, symbols: list[str] | None = None, slots: int = 1):
        """A batch and then the overview, as the tick task runs them: one goes out a second,
        so the claim of the last second is released first. The overview goes out after the
        batch's ticks, so once a socket has it, it has had everything of the batch."""
        await sync_to_async(app_redis().delete)(keys.OVERVIEW_DUE)
        rows = self.rows(symbols or self.tickers, slots)
        result = await sync_to_async(ingest)(TickBatch.from_rows(rows))
        await sync_to_async(publish_overview_if_due)(result.states)
        return rows


@pytest.fixture
async def feed(market, redis_client):
    yield Feed([s.ticker for s in market])
    # The ORM ran in asgiref's worker thread: close its connection, as Daphne would.
    await sync_to_async(connections.close_all)()


async def rest(path: str, client: APIClient | None = None) -> dict:
    response = await sync_to_async((client or APIClient()).get)(path)
    assert response.status_code == 200, (path, response.status_code, response.content)
    return response.json()


async def connect(path: str, headers: list[tuple[bytes, bytes]] | None = None):
    socket = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await socket.connect(timeout=WAIT)
    assert connected, path
    return socket


async def close_code(socket: WebsocketCommunicator) -> int:
    """Read what the server sends until it closes; the close code."""
    while True:
        output = await socket.receive_output(timeout=WAIT)
        if output["type"] == "websocket.close":
            return output.get("code", 1000)


async def refused_with(socket: WebsocketCommunicator) -> int | str:
    """What an accepted socket is told first: the close code, or the data sent instead."""
    output = await socket.receive_output(timeout=WAIT)
    if output["type"] == "websocket.close":
        return output.get("code", 1000)
    return output.get("text") or repr(output)


async def read_until(socket: WebsocketCommunicator, done: Callable[[list[dict]], bool]):
    """/ws/market frames until `done(messages so far)`; (frames, messages)."""
    frames: list[list[dict]] = []
    received: list[dict] = []
    while not done(received):
        frame = await socket.receive_json_from(timeout=WAIT)
        assert isinstance(frame, list), frame  # every /ws/market frame is a JSON array
        frames.append(frame)
        received += frame
    return frames, received


def of_type(kind: str, received: list[dict]) -> list[dict]:
    return [m for m in received if m["type"] == kind]


def has(kind: str) -> Callable[[list[dict]], bool]:
    return lambda received: bool(of_type(kind, received))


def overview_priced_at(rows: list[tuple]) -> Callable[[list[dict]], bool]:
    """An overview that shows the newest price of every symbol in `rows`."""
    newest = {symbol: price for symbol, _, price, _ in rows}

    def done(received: list[dict]) -> bool:
        for message in of_type("overview", received):
            shown = {s["symbol"]: s["price"] for s in message["symbols"]}
            if all(shown.get(symbol) == price for symbol, price in newest.items()):
                return True
        return False

    return done


async def opened_market(path: str = "/ws/market", headers=None) -> WebsocketCommunicator:
    """A /ws/market socket past its first frame (the overview)."""
    socket = await connect(path, headers)
    await read_until(socket, has("overview"))
    return socket


async def subscribe(socket: WebsocketCommunicator, symbols, action: str = "subscribe"):
    """Send a subscription change; every message up to and including its `subscribed` ack."""
    await socket.send_json_to({"action": action, "symbols": symbols})
    _, received = await read_until(socket, has("subscribed"))
    return received


def ack(received: list[dict]) -> list[str]:
    (answer,) = of_type("subscribed", received)
    return answer["symbols"]


def tick_keys(messages: list[dict]) -> list[tuple[str, datetime, float, int]]:
    return [(m["symbol"], parse_ts(m["ts"]), m["price"], m["size"]) for m in messages]


async def batch_on(socket, feed: Feed, symbols: list[str] | None = None, slots: int = 1):
    """Ingest one batch; (its rows, the frames the socket got for it, ticks among them)."""
    rows = await feed.ingest_with_overview(symbols, slots)
    frames, received = await read_until(socket, overview_priced_at(rows))
    return rows, frames, of_type("tick", received)


# /ws/stocks/{symbol}


async def test_the_stock_snapshot_says_what_the_rest_api_says(feed):
    rows = await feed.ingest(["AAPL", "MSFT"], slots=130)
    aapl = [r for r in rows if r[0] == "AAPL"]

    socket = await connect("/ws/stocks/AAPL")
    snapshot = await socket.receive_json_from(timeout=WAIT)
    price = await rest("/api/v1/stocks/AAPL/price")
    indicators = await rest("/api/v1/stocks/AAPL/indicators")
    history = await rest("/api/v1/stocks/AAPL/history?limit=120")
    await socket.disconnect()

    assert snapshot["type"] == "snapshot"
    assert snapshot["symbol"] == "AAPL"
    # The latest tick, with the same field names and values as GET .../price.
    assert (parse_ts(snapshot["ts"]), snapshot["price"]) == (aapl[-1][1], aapl[-1][2])
    assert {field: snapshot[field] for field in price} == price
    # The latest indicators, as GET .../indicators has them (warm after 130 ticks).
    assert set(snapshot["indicators"]) == INDICATOR_FIELDS
    assert snapshot["indicators"] == {f: indicators[f] for f in INDICATOR_FIELDS}
    assert all(v is not None for v in snapshot["indicators"].values())
    # The last 120 ticks, oldest first, as GET .../history?limit=120 lists them.
    assert snapshot["history"] == history["results"]
    assert [(parse_ts(t["ts"]), t["price"], t["size"]) for t in snapshot["history"]] == [
        (ts, p, size) for _, ts, p, size in aapl[-120:]
    ]


async def test_a_tick_published_while_the_snapshot_is_read_arrives_exactly_once(feed, monkeypatch):
    """The socket joins its group, then reads the snapshot. A tick that lands between the
    two is in the snapshot and also reaches the group: the feed must send it once."""
    from apps.streaming import consumers

    await feed.ingest(["AAPL"], slots=5)
    read_snapshot = consumers._stock_snapshot
    between: list[tuple] = []

    async def tick_lands_first(ticker: str) -> dict:
        between.extend(await feed.ingest(["AAPL"]))  # published to the joined group
        return await read_snapshot(ticker)

    monkeypatch.setattr(consumers, "_stock_snapshot", tick_lands_first)
    socket = await connect("/ws/stocks/AAPL")
    snapshot = await socket.receive_json_from(timeout=WAIT)
    later = await feed.ingest(["AAPL"])
    after = await socket.receive_json_from(timeout=WAIT)
    await socket.disconnect()

    ((_, ts, price, size),) = between
    assert (parse_ts(snapshot["ts"]), snapshot["price"]) == (ts, price)  # it is in the snapshot
    assert (parse_ts(snapshot["history"][-1]["ts"]), snapshot["history"][-1]["size"]) == (ts, size)
    # ... and not sent again: the next frame is the next tick.
    assert after["type"] == "tick"
    assert tick_keys([after]) == later


async def test_a_symbol_without_ticks_gets_an_empty_snapshot_then_its_first_tick(feed):
    socket = await connect("/ws/stocks/TSLA")
    snapshot = await socket.receive_json_from(timeout=WAIT)
    price = await rest("/api/v1/stocks/TSLA/price")
    indicators = await rest("/api/v1/stocks/TSLA/indicators")

    assert snapshot["type"] == "snapshot"
    assert snapshot["symbol"] == "TSLA"
    assert snapshot["price"] is None
    assert snapshot["history"] == []
    assert {field: snapshot[field] for field in price} == price
    assert snapshot["indicators"] == {f: indicators[f] for f in INDICATOR_FIELDS}

    rows = await feed.ingest(["TSLA", "AAPL"])
    tick = await socket.receive_json_from(timeout=WAIT)
    await socket.disconnect()
    assert tick["type"] == "tick"
    assert tick_keys([tick]) == [r for r in rows if r[0] == "TSLA"]


async def test_the_stock_feed_sends_one_tick_message_per_tick_with_its_indicators(feed):
    await feed.ingest(["AAPL", "MSFT"], slots=40)
    socket = await connect("/ws/stocks/AAPL")
    snapshot = await socket.receive_json_from(timeout=WAIT)
    assert snapshot["type"] == "snapshot"

    rows = await feed.ingest(["AAPL", "MSFT", "TSLA"], slots=3)
    rows += await feed.ingest(["MSFT", "AAPL"])
    expected = [r for r in rows if r[0] == "AAPL"]
    received = [await socket.receive_json_from(timeout=WAIT) for _ in expected]
    stored = await rest(f"/api/v1/stocks/AAPL/indicators/history?limit={len(expected)}")
    latest = await rest("/api/v1/stocks/AAPL/indicators")
    await socket.disconnect()

    assert [m["type"] for m in received] == ["tick"] * len(expected)
    # Only this symbol's ticks, in order, each as it was ingested.
    assert tick_keys(received) == expected
    # Each carries the indicators stored for its tick (REST .../indicators/history).
    assert [m["ts"] for m in received] == [s["ts"] for s in stored["results"]]
    assert [m["indicators"] for m in received] == [
        {f: s[f] for f in INDICATOR_FIELDS} for s in stored["results"]
    ]
    assert received[-1]["indicators"] == {f: latest[f] for f in INDICATOR_FIELDS}


@pytest.mark.parametrize("path", ["/ws/stocks/aapl", "/ws/stocks/AAPL/", "/ws/stocks/aApL/"])
async def test_the_stock_path_takes_any_case_and_a_trailing_slash(feed, path):
    rows = await feed.ingest(["AAPL"], slots=3)
    socket = await connect(path)
    snapshot = await socket.receive_json_from(timeout=WAIT)
    await socket.disconnect()
    assert snapshot["type"] == "snapshot"
    assert snapshot["symbol"] == "AAPL"
    assert snapshot["price"] == rows[-1][2]


@pytest.mark.parametrize("path", ["/ws/nonexistent", "/ws/", "/ws/stocks", "/ws/market/x", "/"])
async def test_a_path_that_is_no_feed_is_accepted_then_closed_with_4404(path):
    socket = await connect(path)
    assert await refused_with(socket) == 4404
    await socket.disconnect()


@pytest.mark.parametrize("symbol", ["ZZZZ", "A" * 40, "AAPL.X", "$%25", "ms ft", "A\x00B", "%00"])
async def test_an_unknown_symbol_is_accepted_then_closed_with_4404(feed, redis_client, symbol):
    socket = await connect(f"/ws/stocks/{symbol}")
    assert await refused_with(socket) == 4404
    await socket.disconnect()
    assert redis_client.hgetall(keys.WATCHED_SYMBOLS) == {}


async def test_open_stock_sockets_are_counted_as_watching_their_symbol(feed, redis_client):
    def watching() -> dict[str, int]:
        counts = redis_client.hgetall(keys.WATCHED_SYMBOLS)
        return {k.decode(): int(v) for k, v in counts.items() if int(v)}

    first = await connect("/ws/stocks/AAPL")
    await first.receive_json_from(timeout=WAIT)
    second = await connect("/ws/stocks/aapl/")
    await second.receive_json_from(timeout=WAIT)
    other = await connect("/ws/stocks/MSFT")
    await other.receive_json_from(timeout=WAIT)
    market_socket = await opened_market()
    assert watching() == {"AAPL": 2, "MSFT": 1}

    await first.disconnect()
    assert watching() == {"AAPL": 1, "MSFT": 1}
    await second.disconnect()
    await other.disconnect()
    await market_socket.disconnect()
    assert watching() == {}


# /ws/market


async def test_the_market_feed_opens_with_the_overview_the_rest_api_gives(feed):
    rows = await feed.ingest(slots=30)
    socket = await connect("/ws/market")
    first = await socket.receive_json_from(timeout=WAIT)
    answer = await rest("/api/v1/market/overview")
    await socket.disconnect()

    assert isinstance(first, list)
    (overview,) = of_type("overview", first)
    assert {k: v for k, v in overview.items() if k not in ("type", "ts")} == {
        k: v for k, v in answer.items() if k != "ts"
    }
    newest = {symbol: price for symbol, _, price, _ in rows}
    assert {s["symbol"]: s["price"] for s in overview["symbols"]} == newest
    parse_ts(overview["ts"])


async def test_the_market_path_takes_a_trailing_slash(feed):
    socket = await opened_market("/ws/market/")
    assert ack(await subscribe(socket, ["AAPL"])) == ["AAPL"]
    rows, _, ticks = await batch_on(socket, feed)
    await socket.disconnect()
    assert tick_keys(ticks) == [r for r in rows if r[0] == "AAPL"]


async def test_the_overview_the_pipeline_publishes_reaches_market_sockets(feed):
    socket = await opened_market()
    rows = await feed.ingest_with_overview()
    _, received = await read_until(socket, has("overview"))
    answer = await rest("/api/v1/market/overview")
    await socket.disconnect()

    (overview,) = of_type("overview", received)
    assert of_type("tick", received) == []  # nothing subscribed, so no ticks
    newest = {symbol: price for symbol, _, price, _ in rows}
    assert {s["symbol"]: s["price"] for s in overview["symbols"]} == newest
    assert {k: v for k, v in overview.items() if k not in ("type", "ts")} == {
        k: v for k, v in answer.items() if k != "ts"
    }


async def test_subscribed_symbols_only_arrive_one_frame_per_batch(feed):
    socket = await opened_market()
    assert sorted(ack(await subscribe(socket, ["AAPL", "msft"]))) == ["AAPL", "MSFT"]

    for slots in (2, 1, 3):
        rows, frames, ticks = await batch_on(socket, feed, slots=slots)
        wanted = [r for r in rows if r[0] in ("AAPL", "MSFT")]
        assert sorted(tick_keys(ticks)) == sorted(wanted)
        # The batch's ticks came in one frame (a JSON array), each with its indicators.
        assert len([f for f in frames if of_type("tick", f)]) == 1
        assert all(set(t["indicators"]) == INDICATOR_FIELDS for t in ticks)
    await socket.disconnect()


async def test_star_subscribes_every_symbol(feed):
    socket = await opened_market()
    assert ack(await subscribe(socket, ["*"])) in (["*"], sorted(feed.tickers))
    rows, _, ticks = await batch_on(socket, feed, slots=2)
    await socket.disconnect()
    assert sorted(tick_keys(ticks)) == sorted(rows)


async def test_star_as_a_bare_string_subscribes_every_symbol(feed):
    socket = await opened_market()
    assert ack(await subscribe(socket, "*")) in (["*"], sorted(feed.tickers))
    rows, _, ticks = await batch_on(socket, feed)
    await socket.disconnect()
    assert sorted(tick_keys(ticks)) == sorted(rows)


async def test_subscriptions_add_up_and_unsubscribe_removes(feed):
    socket = await opened_market()
    assert ack(await subscribe(socket, ["AAPL"])) == ["AAPL"]
    assert sorted(ack(await subscribe(socket, ["TSLA", "MSFT"]))) == ["AAPL", "MSFT", "TSLA"]
    assert sorted(ack(await subscribe(socket, ["MSFT"], "unsubscribe"))) == ["AAPL", "TSLA"]
    rows, _, ticks = await batch_on(socket, feed)
    assert sorted(tick_keys(ticks)) == sorted(r for r in rows if r[0] in ("AAPL", "TSLA"))

    # Everything but one symbol.
    await subscribe(socket, ["*"])
    rest_of_market = sorted(set(feed.tickers) - {"TSLA"})
    assert sorted(ack(await subscribe(socket, ["tsla"], "unsubscribe"))) == rest_of_market
    rows, _, ticks = await batch_on(socket, feed)
    assert sorted(tick_keys(ticks)) == sorted(r for r in rows if r[0] != "TSLA")

    # Nothing at all.
    assert ack(await subscribe(socket, ["*"], "unsubscribe")) == []
    _, _, ticks = await batch_on(socket, feed)
    assert ticks == []
    await socket.disconnect()


async def test_unknown_symbols_get_an_error_naming_them_and_the_known_ones_count(feed):
    socket = await opened_market()
    received = await subscribe(socket, ["AAPL", "NOPE", "zzz9"])
    (error,) = of_type("error", received)
    named = json.dumps(error).upper()
    assert "NOPE" in named
    assert "ZZZ9" in named
    assert "AAPL" not in named
    assert ack(received) == ["AAPL"]
    rows, _, ticks = await batch_on(socket, feed)
    await socket.disconnect()
    assert tick_keys(ticks) == [r for r in rows if r[0] == "AAPL"]


async def test_an_inactive_symbol_can_be_subscribed_like_on_the_other_doors(feed):
    await sync_to_async(Symbol.objects.filter(ticker="MSFT").update)(active=False)
    socket = await opened_market()
    received = await subscribe(socket, ["msft"])
    await socket.disconnect()
    assert of_type("error", received) == []
    assert ack(received) == ["MSFT"]


BAD_MESSAGES = {
    "malformed JSON": '{"action": "subscribe", "symbols": ["AAPL"]',
    "not JSON at all": "subscribe AAPL",
    "empty": "",
    "a JSON array": '["subscribe", ["AAPL"]]',
    "a JSON string": '"subscribe"',
    "a JSON number": "42",
    "JSON null": "null",
    "no action": '{"symbols": ["AAPL"]}',
    "an unknown action": '{"action": "buy", "symbols": ["AAPL"]}',
    "an action of the wrong type": '{"action": ["subscribe"], "symbols": ["AAPL"]}',
    "symbols missing": '{"action": "subscribe"}',
    "symbols a single ticker": '{"action": "subscribe", "symbols": "AAPL"}',
    "symbols numbers": '{"action": "subscribe", "symbols": [1, 2]}',
    "symbols mixed": '{"action": "subscribe", "symbols": ["AAPL", null]}',
    "symbols an object": '{"action": "subscribe", "symbols": {"AAPL": true}}',
    "nested too deep": "[" * 30_000 + "]" * 30_000,
    "over 64 KiB": json.dumps({"action": "subscribe", "symbols": ["AAPL"] * 10_000}),
    "over 64 KiB of UTF-8 in fewer characters": json.dumps(
        {"action": "subscribe", "symbols": ["AAPL"], "note": "é" * 40_000}, ensure_ascii=False
    ),
}


@pytest.mark.parametrize("text", list(BAD_MESSAGES.values()), ids=list(BAD_MESSAGES))
async def test_bad_messages_get_an_error_and_the_socket_stays_open(feed, text):
    socket = await opened_market()
    await socket.send_input({"type": "websocket.receive", "text": text})
    _, received = await read_until(socket, has("error"))
    (error,) = of_type("error", received)
    assert isinstance(error["message"], str)
    assert error["message"]
    assert of_type("subscribed", received) == []
    # Still open, and the bad message subscribed nothing.
    assert ack(await subscribe(socket, ["MSFT"])) == ["MSFT"]
    rows, _, ticks = await batch_on(socket, feed)
    await socket.disconnect()
    assert tick_keys(ticks) == [r for r in rows if r[0] == "MSFT"]


async def test_a_binary_frame_that_is_not_json_gets_an_error(feed):
    socket = await opened_market()
    await socket.send_to(bytes_data=b"\x00\xff\xfe not json")
    _, received = await read_until(socket, has("error"))
    assert of_type("error", received)[0]["message"]
    assert ack(await subscribe(socket, ["MSFT"])) == ["MSFT"]
    await socket.disconnect()


def padded_subscribe(size: int) -> str:
    """A valid subscribe to AAPL of exactly `size` bytes (JSON whitespace as padding)."""
    head = '{"action": "subscribe", "symbols": ["AAPL"]'
    return head + " " * (size - len(head) - 1) + "}"


async def test_a_message_of_exactly_64_kib_is_accepted_and_one_byte_more_refused(feed):
    socket = await opened_market()
    at_limit, over = padded_subscribe(MAX_MESSAGE), padded_subscribe(MAX_MESSAGE + 1)
    assert (len(at_limit.encode()), len(over.encode())) == (MAX_MESSAGE, MAX_MESSAGE + 1)
    assert ack(await subscribe(socket, ["TSLA"])) == ["TSLA"]
    await socket.send_to(text_data=over)
    _, received = await read_until(socket, has("error"))
    assert of_type("subscribed", received) == []
    await socket.send_to(text_data=at_limit)
    _, received = await read_until(socket, has("subscribed"))
    assert of_type("error", received) == []
    assert sorted(ack(received)) == ["AAPL", "TSLA"]
    await socket.disconnect()


async def test_twenty_messages_in_a_burst_are_all_answered(feed):
    socket = await opened_market()
    for _ in range(20):
        await socket.send_json_to({"action": "subscribe", "symbols": ["AAPL"]})
    await read_until(socket, lambda received: len(of_type("subscribed", received)) == 20)
    await asyncio.sleep(1.1)  # a new second: the next message starts a new count
    assert ack(await subscribe(socket, ["MSFT"])) == ["AAPL", "MSFT"]
    await socket.disconnect()


async def test_more_than_twenty_messages_in_a_second_close_the_socket_with_4429(feed):
    socket = await opened_market()
    for _ in range(30):
        await socket.send_json_to({"action": "subscribe", "symbols": ["AAPL"]})
    assert await close_code(socket) == 4429


# Authentication and origin


@pytest.fixture
def private(settings):
    settings.MARKETFLUX_PUBLIC_READ = False


@pytest.fixture
def user_token() -> Callable:
    @sync_to_async
    def make(active: bool = True) -> str:
        user = get_user_model().objects.create_user("trader", is_active=active)
        return Token.objects.create(user=user).key

    return make


@pytest.mark.parametrize("path", ["/ws/market", "/ws/stocks/AAPL"])
async def test_without_public_read_an_anonymous_socket_is_closed_with_4401(feed, private, path):
    socket = await connect(path)
    assert await refused_with(socket) == 4401


async def test_without_public_read_a_token_opens_both_feeds(feed, private, user_token):
    key = await user_token()
    market_socket = await connect(f"/ws/market?token={key}")
    frame = await market_socket.receive_json_from(timeout=WAIT)
    assert of_type("overview", frame)
    assert ack(await subscribe(market_socket, ["AAPL"])) == ["AAPL"]
    stock = await connect(f"/ws/stocks/aapl/?token={key}")
    snapshot = await stock.receive_json_from(timeout=WAIT)
    assert snapshot["type"] == "snapshot"
    rows, _, ticks = await batch_on(market_socket, feed)
    tick = await stock.receive_json_from(timeout=WAIT)
    await market_socket.disconnect()
    await stock.disconnect()
    assert tick_keys(ticks) == tick_keys([tick]) == [r for r in rows if r[0] == "AAPL"]


async def test_without_public_read_a_browser_session_opens_the_feed(feed, private):
    @sync_to_async
    def session_cookie() -> bytes:
        user = get_user_model().objects.create_user("browser")
        client = Client()
        client.force_login(user)
        name = django_settings.SESSION_COOKIE_NAME
        return f"{name}={client.cookies[name].value}".encode()

    socket = await connect("/ws/market", headers=[(b"cookie", await session_cookie())])
    frame = await socket.receive_json_from(timeout=WAIT)
    await socket.disconnect()
    assert of_type("overview", frame)


@pytest.mark.parametrize("public_read", [True, False], ids=["public", "private"])
@pytest.mark.parametrize(
    "token",
    ["0123456789abcdef0123456789abcdef01234567", "x" * 200, "%00", ""],
    ids=["unknown", "overlong", "nul", "empty"],
)
@pytest.mark.parametrize("path", ["/ws/market", "/ws/stocks/AAPL"])
async def test_a_bad_token_is_closed_with_4401(feed, settings, public_read, token, path):
    settings.MARKETFLUX_PUBLIC_READ = public_read
    socket = await connect(f"{path}?token={token}")
    assert await refused_with(socket) == 4401


async def test_a_token_of_a_deactivated_user_is_closed_with_4401(feed, user_token):
    key = await user_token(active=False)
    socket = await connect(f"/ws/market?token={key}")
    assert await refused_with(socket) == 4401


@pytest.mark.parametrize("path", ["/ws/market", "/ws/stocks/AAPL"])
@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://127.0.0.1.evil.example", "null"]
)
async def test_a_foreign_origin_is_refused(feed, path, origin):
    socket = WebsocketCommunicator(application, path, headers=[(b"origin", origin.encode())])
    connected, _ = await socket.connect(timeout=WAIT)
    assert not connected


def allowed_origin() -> str:
    host = next(h for h in django_settings.ALLOWED_HOSTS if h and h[0] not in ".*")
    return f"http://{host}:8000"


@pytest.mark.parametrize("path", ["/ws/market", "/ws/stocks/AAPL"])
async def test_an_allowed_origin_and_no_origin_connect(feed, path):
    with_origin = await connect(path, headers=[(b"origin", allowed_origin().encode())])
    without = await connect(path)
    for socket in (with_origin, without):
        first = await socket.receive_json_from(timeout=WAIT)
        assert first  # the overview frame or the snapshot
        await socket.disconnect()
