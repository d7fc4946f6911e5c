"""The live connector (apps/sources/live/connector.py, with the Alpaca feed) when the vendor
misbehaves: frames it cannot read, keys it refuses, a server that hangs up at once, one that
never answers. Each time the connector stays up, says what is wrong in its state, waits
(longer for a refused key) and tries again, and once the vendor behaves, stores every trade
once. The vendors are loopback servers: apps/testing/alpaca.py with its fault modes, a raw
WebSocket server scripted here, and a TCP front here that closes, stays silent or forwards."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgpack
import psycopg
import pytest
from django.db import connection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from apps.market.models import Source, Symbol, Tick
from apps.sources.live.connector import Backoff
from apps.testing.alpaca import AlpacaServer
from apps.testing.network import pipe
from apps.testing.sources import RunningConnector
from apps.testing.waiting import wait_for

T = TypeVar("T")

pytestmark = pytest.mark.django_db(transaction=True)  # the connector stores on its own thread

KEY_ENV, SECRET_ENV = "TEST_ALPACA_KEY", "TEST_ALPACA_SECRET"  # the variables
KEY, SECRET = "AKFAULTS", "fault-secret"
WAIT = 15.0
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
T0_NS = 1_772_461_800 * 10**9  # T0: 20,514 days and 52,200 s after the epoch
SHORT = 0.5  # s: the open and handshake timeouts here (10 s in production)


@dataclass
class RecordingBackoff(Backoff):
    """The small pauses of a test, remembering each one the connector asked for."""

    base: float = 0.2
    cap: float = 1.0
    refused: float = 1.0
    asked: list[tuple[int, str | None, float]] = field(default_factory=list)

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        pause = super().delay(attempt, error)
        self.asked.append((attempt, type(error).__name__ if error else None, pause))
        return pause


def trade(i: int, ms: int, price: float, size: int) -> dict[str, Any]:
    return {"S": "AAPL", "i": i, "x": "V", "p": price, "s": size, "c": ["@"],
            "t": T0_NS + ms * 1_000_000, "z": "C"}  # fmt: skip


def quote(ms: int, bid: float, ask: float) -> dict[str, Any]:
    return {"S": "AAPL", "bx": "V", "bp": bid, "bs": 1, "ax": "V", "ap": ask, "as": 2,
            "c": ["R"], "t": T0_NS + ms * 1_000_000, "z": "C"}  # fmt: skip


def ticks() -> list[tuple]:
    columns = ("symbol_id", "ts", "price", "size", "trades", "bid", "ask")
    return list(Tick.objects.order_by("ts").values_list(*columns))


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


@pytest.fixture
def server() -> Iterator[AlpacaServer]:
    with AlpacaServer(key=KEY, secret=SECRET, batch_size=100) as alpaca:
        yield alpaca


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)


def alpaca_source(url: str, rest_url: str) -> Source:
    source = Source.objects.create(
        name="alpaca", kind=Source.ALPACA, url=url, rest_url=rest_url,
        key_env=KEY_ENV, secret_env=SECRET_ENV,
    )  # fmt: skip
    Symbol.objects.create(ticker="AAPL", name="Apple", exchange="NASDAQ", source=source,
                          start_price=100.0)  # fmt: skip
    return source


def waiting(running: RunningConnector, predicate: Callable[[], object], what: str) -> object:
    """wait_for, failing at once with the connector's own error if it stopped (it must not:
    a vendor's fault is never a reason to stop)."""

    def check() -> object:
        if running.task is not None and running.task.done():
            running.task.result()  # raises what stopped it
            pytest.fail(f"the connector stopped while waiting for {what}")
        return predicate()

    return wait_for(check, timeout=WAIT, what=what)


def connector(source: Source, backoff: RecordingBackoff) -> RunningConnector:
    """A connector with the test's short open and handshake timeouts."""
    running = RunningConnector(source, ["AAPL"], backoff=backoff)
    running.connector.OPEN_TIMEOUT = SHORT
    running.connector.feed.HANDSHAKE_TIMEOUT = SHORT
    return running


def works_again(running: RunningConnector, server: AlpacaServer, first_id: int = 1) -> None:
    """Once the vendor behaves: the connector subscribes and stores a trade once, its
    repeat dropped."""
    server.wait_subscribed(trades=["AAPL"], timeout=WAIT)
    server.send_trades([trade(first_id, 100, 187.0, 10), trade(first_id, 100, 187.0, 10)])
    waiting(running, lambda: Tick.objects.exists(), "the trade stored")
    assert running.state.connected
    assert not running.task.done()


# --- Malformed frames ------------------------------------------------------------------------


def malformed_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "malformed message" in r.getMessage()]


def test_malformed_frames_are_counted_by_kind_logged_once_and_the_stream_goes_on(
    server, credentials, fresh_state, caplog
):
    source = alpaca_source(server.stream_url(), server.rest_url)
    server.malformed = True  # before each push: a frame of junk, then a message of junk
    with (
        caplog.at_level(logging.WARNING, logger="marketflux.sources"),
        connector(source, RecordingBackoff()) as running,
    ):
        server.wait_subscribed(trades=["AAPL"], timeout=WAIT)
        server.send_trades([trade(1, 100, 187.0, 10), trade(2, 300, 187.5, 5)])  # slot 0
        server.send_quotes([quote(600, 186.9, 187.1)])
        server.send_trades([trade(3, 1100, 187.2, 7), trade(1, 100, 187.0, 10)])  # slot 2
        waiting(running, lambda: Tick.objects.count() == 2, "the good trades")
        state = running.report()

    assert state["malformed"] == {
        "frame that is neither msgpack nor JSON": 3,  # one a push
        "trade with a bad p (price)": 2,  # `p: "n/a"`, with each push of trades
        "quote with a bad bp or ap (prices)": 1,
    }
    assert sorted(malformed_logs(caplog)) == sorted(
        f"alpaca: malformed message: {kind} (counted from now on, logged once)"
        for kind in state["malformed"]
    )
    assert len(server.clients) == 1  # one connection all along: junk is no reason to leave
    assert (state["errors"], state["reconnects"], state["duplicates"]) == (0, 0, 1)
    assert ticks() == [
        ("AAPL", at(0), 187.5, 15, 2, None, None),  # 187.0 then 187.5; 10+5
        ("AAPL", at(1000), 187.2, 7, None, 186.9, 187.1),  # trade 1 again: dropped
    ]


class ScriptedFeed:
    """A raw WebSocket server on 127.0.0.1: each connection runs `script(ws, n)`, n counting
    the connections from 1, on an event loop of its own thread."""

    def __init__(self, script: Callable[[ServerConnection, int], Awaitable[None]]) -> None:
        self.script = script
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ScriptedFeed:
        self.thread.start()

        async def start() -> Server:
            return await serve(self._handle, "127.0.0.1", 0)  # on the loop: serve() needs it

        self.server = self._call(start())
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v2/iex"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            await self.script(ws, self.connections)
        except ConnectionClosed:
            pass


def frame(*messages: Any) -> str:
    return json.dumps(list(messages))


GOOD = {"T": "t", "S": "AAPL", "i": 1, "x": "V", "p": 187.0, "s": 10,
        "t": "2026-03-02T14:30:00.1Z"}  # fmt: skip
JUNK = [
    '{"T": "t"}',  # a frame that is not an array
    "[1, 2",  # nor JSON
    frame(1, "x"),  # messages without T
    frame({**GOOD, "S": ["AAPL"]}, {"T": "q", "S": {"AAPL": 1}}),  # S of the wrong type
    frame({**GOOD, "s": 0}, {**GOOD, "s": 1.5}),  # sizes
    frame({**GOOD, "t": 12345}, {**GOOD, "t": "9999-12-31T23:59:59Z"}),  # times
    frame({"T": "q", "S": "AAPL", "bp": 1.0, "ap": 1.1, "bs": 1.5, "as": 1, "t": GOOD["t"]}),
    frame({**GOOD, "S": "TSLA"}, {"T": "subscription", "trades": ["AAPL"]}),  # not ours
    frame(GOOD),  # the good trade, last
]


async def alpaca_script(ws: ServerConnection, n: int) -> None:
    """Alpaca's handshake in JSON, the junk and the good trade; then, on the first
    connection only, an error frame with a code of the wrong type."""
    await ws.send(frame({"T": "success", "msg": "connected"}))
    auth = msgpack.unpackb(await ws.recv())
    assert (auth["key"], auth["secret"]) == (KEY, SECRET)
    await ws.send(frame({"T": "success", "msg": "authenticated"}))
    await ws.recv()  # the subscription
    await ws.send(frame({"T": "subscription", "trades": ["AAPL"], "quotes": ["AAPL"]}))
    for text in JUNK:
        await ws.send(text)
    if n == 1:
        await ws.send(frame({"T": "error", "code": [406], "msg": "odd error"}))
    await ws.wait_closed()


def test_every_kind_of_malformed_message_is_counted_and_none_stops_the_connector(
    server, credentials, fresh_state, caplog
):
    with (
        ScriptedFeed(alpaca_script) as feed,
        caplog.at_level(logging.WARNING, logger="marketflux.sources"),
    ):
        source = alpaca_source(feed.url, server.rest_url)  # its REST history: empty
        with connector(source, RecordingBackoff()) as running:
            # The second connection's good trade is the first's again: dropped.
            waiting(running, lambda: running.state.duplicates == 1,
                    "the good trade again, on the second connection")  # fmt: skip
            waiting(running, lambda: Tick.objects.exists(), "the good trade stored")
            state = running.report()
            assert not running.task.done()

    assert feed.connections == 2
    assert state["malformed"] == {  # each junk frame came twice, once a connection
        "frame that is not an array": 2,
        "frame that is neither msgpack nor JSON": 2,
        "message without T": 4,
        "trade without S": 2,
        "quote without S": 2,
        "trade with a bad s (size)": 4,
        "trade with a bad t (time)": 4,  # not a time; after 2262 (out of int64 ns)
        "quote with a bad bs or as (sizes)": 2,
    }
    assert len(malformed_logs(caplog)) == len(state["malformed"])  # once per kind
    assert state["last_error"]["message"] == "FeedError: odd error ([406])"
    assert ticks() == [("AAPL", at(0), 187.0, 10, None, None, None)]


T_EVENT = {"ev": "T", "sym": "AAPL", "i": "1", "x": 4, "p": 187.0, "s": 10,
           "t": T0_NS // 10**6 + 100}  # fmt: skip
POLYGON_JUNK = [
    "{}",  # not an array
    "nope",  # not JSON
    frame(1),  # an event without ev
    frame({**T_EVENT, "sym": ["AAPL"]}, {"ev": "Q", "sym": {"AAPL": 1}}),  # sym's type
    frame({**T_EVENT, "t": 10**17}),  # ms after 2262: out of int64 ns
    frame(T_EVENT),
]


async def polygon_script(ws: ServerConnection, n: int) -> None:
    """Polygon/Massive's handshake, the junk and the good trade."""
    await ws.send(frame({"ev": "status", "status": "connected", "message": "Connected"}))
    assert json.loads(await ws.recv()) == {"action": "auth", "params": KEY}
    await ws.send(frame({"ev": "status", "status": "auth_success", "message": "authenticated"}))
    await ws.recv()  # the subscription
    for text in POLYGON_JUNK:
        await ws.send(text)
    await ws.wait_closed()


def test_the_polygon_feed_counts_its_malformed_events_and_goes_on(credentials, fresh_state):
    with ScriptedFeed(polygon_script) as feed:
        source = Source.objects.create(name="massive", kind=Source.POLYGON, url=feed.url,
                                       key_env=KEY_ENV)  # fmt: skip
        Symbol.objects.create(ticker="AAPL", name="Apple", exchange="NASDAQ", source=source,
                              start_price=100.0)  # fmt: skip
        with connector(source, RecordingBackoff()) as running:
            waiting(running, lambda: Tick.objects.exists(), "the good trade stored")
            state = running.report()

    assert feed.connections == 1
    assert state["malformed"] == {
        "frame that is not an array": 1,
        "frame that is not JSON": 1,
        "message without ev": 1,
        "T without sym": 1,
        "Q without sym": 1,
        "T with a bad t (time)": 1,
    }
    assert state["errors"] == 0
    assert ticks() == [("AAPL", at(0), 187.0, 10, None, None, None)]


# --- Refused keys --------------------------------------------------------------------------


def test_a_refused_key_is_a_clear_error_and_waits_longer_before_trying_again(
    server, credentials, fresh_state
):
    source = alpaca_source(server.stream_url(), server.rest_url)
    server.auth_fails = True  # every auth answered 402
    backoff = RecordingBackoff()
    with connector(source, backoff) as running:
        waiting(running, lambda: server.auth_attempts >= 3, "three auth attempts")
        assert running.state.last_error["message"] == "AuthFailed: auth failed (402)"
        assert not running.state.connected
        assert server.messages("subscribe") == []
        server.auth_fails = False
        works_again(running, server)
        state = running.report()

    refused = [(attempt, pause) for attempt, error, pause in backoff.asked if error]
    assert len(refused) >= 2
    assert {error for _, error, _ in backoff.asked} == {"AuthFailed"}
    # A refused key waits refused/2 to refused (0.5-1 s), not base/2 to base (0.1-0.2 s).
    assert all(0.5 <= pause <= 1.0 for _, pause in refused)
    assert state["errors"] == len(refused)
    assert ticks() == [("AAPL", at(0), 187.0, 10, None, None, None)]


def test_missing_credentials_name_the_variables_and_nothing_connects(
    server, monkeypatch, fresh_state
):
    source = alpaca_source(server.stream_url(), server.rest_url)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    backoff = RecordingBackoff()
    with connector(source, backoff) as running:
        waiting(running, lambda: len(backoff.asked) >= 2, "a second attempt")
        assert running.state.last_error["message"] == (
            "AuthFailed: set TEST_ALPACA_KEY and TEST_ALPACA_SECRET in the environment"
        )
        assert server.clients == []  # nothing to connect with: no connection
        monkeypatch.setenv(KEY_ENV, KEY)
        monkeypatch.setenv(SECRET_ENV, SECRET)
        works_again(running, server)

    assert all(0.5 <= pause <= 1.0 for _, _, pause in backoff.asked)
    assert ticks() == [("AAPL", at(0), 187.0, 10, None, None, None)]


# --- Servers that hang up or never answer ---------------------------------------------------


class TcpFront:
    """A TCP front on 127.0.0.1 for a real server, in one of three modes: `forward` pipes
    to it, `close` accepts and hangs up at once, `silent` accepts and never sends a byte."""

    def __init__(self, target_port: int, mode: str) -> None:
        self.target_port = target_port
        self.mode = mode
        self.accepted = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpFront:
        self.thread.start()
        self.server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            if self.mode == "close":
                writer.close()
            elif self.mode == "silent":
                await reader.read()  # until the client gives up
                writer.close()
            else:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", self.target_port
                )
                self._writers.add(upstream_writer)
                await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        except (ConnectionError, OSError):
            writer.close()
        finally:
            self._writers.discard(writer)


@dataclass(frozen=True)
class Fault:
    """How a vendor misbehaves, where (the TCP front or the Alpaca server's own fault
    mode), and the error the connector must report."""

    name: str
    front: str  # the TCP front's mode
    server_mode: str | None  # an AlpacaServer attribute switched on, or None
    error: str  # the start of state.last_error's message ({url}: the stream's URL)


FAULTS = [
    Fault("closes at once after the TCP accept", "close", None,
          "InvalidMessage: did not receive a valid HTTP response"),
    Fault("closes at once after the WebSocket accept", "forward", "close_at_once",
          "FeedError: {url} closed the connection before its connected message (received"
          " 1000 (OK); then sent 1000 (OK))"),
    Fault("never answers the TCP connection", "silent", None,
          "TimeoutError: timed out during opening handshake"),
    Fault("never sends the welcome", "forward", "never_answer",
          f"TimeoutError: {{url}} sent no connected message within {SHORT:g} s"),
]  # fmt: skip


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_server_that_hangs_up_or_never_answers_is_retried_with_backoff(
    fault, server, credentials, fresh_state
):
    with TcpFront(server.port, fault.front) as front:
        url = f"ws://127.0.0.1:{front.port}/v2/iex"
        source = alpaca_source(url, server.rest_url)
        if fault.server_mode:
            setattr(server, fault.server_mode, True)
        backoff = RecordingBackoff()
        with connector(source, backoff) as running:
            waiting(running, lambda: len(backoff.asked) >= 3, "three failures")
            assert running.state.last_error["message"] == fault.error.format(url=url)
            assert not running.state.connected
            assert not running.task.done()
            front.mode = "forward"
            if fault.server_mode:
                setattr(server, fault.server_mode, False)
            works_again(running, server)
            state = running.report()

    assert front.accepted >= 4  # three failures, then the connection that works
    failures = [(attempt, pause) for attempt, error, pause in backoff.asked]
    assert [attempt for attempt, _ in failures] == list(range(len(failures)))  # growing
    # Equal jitter: half of min(cap, base x 2^attempt) fixed, half random.
    for attempt, pause in failures:
        ceiling = min(1.0, 0.2 * 2**attempt)
        assert ceiling / 2 <= pause <= ceiling
    assert state["errors"] == state["reconnects"] == len(failures)
    assert ticks() == [("AAPL", at(0), 187.0, 10, None, None, None)]


def test_after_a_connection_that_carried_data_the_backoff_starts_again_from_the_base(
    server, credentials, fresh_state
):
    source = alpaca_source(server.stream_url(), server.rest_url)
    backoff = RecordingBackoff()
    with connector(source, backoff) as running:
        for n in range(1, 4):  # three connections, each carrying a trade, each dropped
            server.wait_subscribed(trades=["AAPL"], timeout=WAIT)
            server.send_trades([trade(n, 1000 * n, 187.0 + n, n)])
            waiting(running, lambda n=n: Tick.objects.count() == n, f"trade {n}")
            assert server.kill_connections() == 1
        server.wait_subscribed(trades=["AAPL"], timeout=WAIT)

    # Each drop is an error (no close frame) after data flowed: the first pause each time.
    assert [(attempt, error) for attempt, error, _ in backoff.asked] == [
        (0, "ConnectionClosedError")
    ] * 3
    assert ticks() == [
        ("AAPL", at(1000), 188.0, 1, None, None, None),
        ("AAPL", at(2000), 189.0, 2, None, None, None),
        ("AAPL", at(3000), 190.0, 3, None, None, None),
    ]


# --- A stop while a batch is being stored --------------------------------------------------


def test_a_stop_waits_for_the_batch_being_stored_even_through_a_database_error(
    server, credentials, fresh_state
):
    """The ticks of a closed slot are in no other hands while they are stored: a stop (the
    runner's restart, SIGTERM) must wait for them, retries included, not drop them."""
    source = alpaca_source(server.stream_url(), server.rest_url)
    running = connector(source, RecordingBackoff())
    blocker = psycopg.connect(**connection.get_connection_params(), autocommit=False)
    try:
        with running:
            server.wait_subscribed(trades=["AAPL"], timeout=WAIT)
            blocker.execute("LOCK TABLE market_tick IN EXCLUSIVE MODE")  # writers wait
            server.send_trades([trade(1, 100, 187.0, 10), trade(2, 700, 188.0, 5)])

            def store_waiting() -> int | None:
                row = blocker.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                ).fetchone()
                return row[0] if row and running.connector.conflator.held == 0 else None

            pid = waiting(running, store_waiting, "the store waiting on the lock")
            stopper = threading.Thread(target=running.stop)
            stopper.start()
            time.sleep(1.0)  # the stop has begun: the connector is cancelled
            # The database drops the store's connection: its batch must be tried again.
            blocker.execute("SELECT pg_terminate_backend(%s)", [pid])
            blocker.commit()  # the lock goes
            stopper.join(WAIT)
            assert not stopper.is_alive()
    finally:
        blocker.close()
    assert ticks() == [
        ("AAPL", at(0), 187.0, 10, None, None, None),
        ("AAPL", at(500), 188.0, 5, None, None, None),
    ]
