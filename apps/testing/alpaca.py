"""A loopback stand-in for Alpaca's market-data v2 service, so the Alpaca connector's tests
never reach the vendor: the stock stream (`ws://127.0.0.1:PORT/v2/iex|sip`) and the REST
history (`http://127.0.0.1:PORT2/v2/stocks/bars|trades`), speaking the wire protocol the
vendor's own client (alpaca-py) speaks; apps/testing/tests/test_alpaca_server.py proves it
with that client.

A test loads or pushes the data, switches fault modes on, and reads back what clients sent:

    with AlpacaServer(key="K", secret="S") as server:
        stream = StockDataStream("K", "S", url_override=server.stream_url("iex"))
        ...
        server.wait_subscribed(trades=["AAPL"])
        server.send_trades([{"S": "AAPL", "p": 187.5, "s": 100, "t": at, ...}])

The stream runs on an asyncio loop of its own in a background thread (the `websockets`
server); the REST side is a small threaded `http.server`. Every call from the test's thread
into the loop is bounded (`WAIT`), and `stop()` (the context manager's exit) drops every
connection and joins both threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import threading
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import msgpack
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from apps.testing.waiting import wait_for

T = TypeVar("T")

WAIT = 10.0  # the longest a call from the test's thread into the server's loop may take
FEEDS = ("iex", "sip")  # the stock streams alpaca-py's StockDataStream accepts
# The channels a client may subscribe to, in the order the subscription message lists them.
CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
DATA_TYPES = {"trades": "t", "quotes": "q", "bars": "b"}  # channel -> `T` of its messages
SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-/]{0,20}$")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
REST_FEEDS = {"iex", "sip", "delayed_sip", "otc", "boats", "overnight"}
ADJUSTMENTS = {"raw", "split", "dividend", "spin-off", "all"}
# The vendor's timeframe units and the amounts each allows.
TIMEFRAME = re.compile(r"^([1-9][0-9]*)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
TIMEFRAME_UNITS = {
    "Min": "Min", "T": "Min", "Hour": "Hour", "H": "Hour", "Day": "Day", "D": "Day",
    "Week": "Week", "W": "Week", "Month": "Month", "M": "Month",
}  # fmt: skip
TIMEFRAME_AMOUNTS = {
    "Min": range(1, 60),
    "Hour": range(1, 24),
    "Day": (1,),
    "Week": (1,),
    "Month": (1, 2, 3, 4, 6, 12),
}
ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
}


# --- Timestamps: an aware datetime (µs) or an int of nanoseconds since the epoch ---------


def to_ns(t: datetime | int) -> int:
    """Nanoseconds since the epoch; a datetime must be timezone-aware (the vendor is UTC)."""
    if isinstance(t, int):
        return t
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: pass an aware one (UTC)")
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def rfc3339(ns: int) -> str:
    """The vendor's JSON time: UTC, `Z`, fraction to the nanosecond with trailing zeros cut
    (Go's RFC3339Nano), e.g. `2024-01-02T14:30:00.123456789Z`, `2024-01-02T14:31:00Z`."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


def _wire_time(value: Any, *, as_msgpack: bool) -> Any:
    """`t` as the stream sends it: a msgpack Timestamp (ext type -1) or an RFC-3339 string.
    Anything else (a test's deliberately wrong value) goes out unchanged."""
    if isinstance(value, bool) or not isinstance(value, datetime | int):
        return value
    ns = to_ns(value)
    return msgpack.Timestamp.from_unix_nano(ns) if as_msgpack else rfc3339(ns)


# --- The stream ----------------------------------------------------------------------------


@dataclass(eq=False)
class StreamClient:
    """One WebSocket connection as the server saw it; tests read it, the loop writes it."""

    id: int
    feed: str
    encoding: str  # "msgpack" or "json", from the upgrade request's Content-Type
    headers: dict[str, str]
    ws: ServerConnection = field(repr=False)
    key: str | None = None  # the API key, once authenticated
    subscriptions: dict[str, dict[str, None]] = field(
        default_factory=lambda: {channel: {} for channel in CHANNELS}
    )  # channel -> symbols, as ordered sets
    received: list[Any] = field(default_factory=list)  # what it sent, decoded (raw if junk)

    @property
    def authenticated(self) -> bool:
        return self.key is not None

    def wants(self, channel: str, symbol: str) -> bool:
        subscribed = self.subscriptions[channel]
        return symbol in subscribed or "*" in subscribed

    def subscription_message(self) -> dict[str, Any]:
        """The full current set; corrections and cancel errors follow trades."""
        message: dict[str, Any] = {"T": "subscription"}
        message.update({channel: list(self.subscriptions[channel]) for channel in CHANNELS})
        message["corrections"] = list(self.subscriptions["trades"])
        message["cancelErrors"] = list(self.subscriptions["trades"])
        return message


@dataclass(frozen=True)
class RestRequest:
    """One request the REST side answered (or refused), for assertions."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int


class AlpacaServer:
    """Alpaca's market-data v2 on loopback: stock stream and REST history, with the vendor's
    handshake, subscription set, error frames, connection limit and pagination, and fault
    modes a connector's tests switch on.

    Fault modes (plain attributes, read on each new connection or push):
    `malformed` — before each push, a frame that is neither JSON nor msgpack and a frame
    with one message of wrong types; `auth_fails` — every auth gets 402; `close_at_once` —
    accept the WebSocket, then close it before the connected message; `never_answer` —
    accept it and never send anything. Outages: `kill_connections()`,
    `refuse_connections(seconds)`, `accept_connections()`; REST: `rate_limit_next(n)`,
    `rate_limit_after(answered, n)`, and `retry_after` (seconds a 429 tells the client to
    wait in `Retry-After`; None, the default, sends no such header).
    """

    def __init__(
        self,
        *,
        key: str = "AKTESTKEY",
        secret: str = "testsecret",  # noqa: S107 — a loopback test server's
        connection_limit: int = 1,
        auth_timeout: float = 10.0,
        batch_size: int = 10,
        symbol_limit: int | None = None,
        page_size: int = MAX_LIMIT,
    ) -> None:
        self.key = key
        self.secret = secret
        self.connection_limit = connection_limit  # per key and endpoint, as the vendor's
        self.auth_timeout = auth_timeout
        self.batch_size = batch_size  # data messages per frame
        self.symbol_limit = symbol_limit
        self.page_size = page_size  # REST: most items in one response, whatever the limit
        self.malformed = False
        self.auth_fails = False
        self.close_at_once = False
        self.never_answer = False
        self.clients: list[StreamClient] = []  # every connection, in order
        self.received: list[Any] = []  # what every client sent, in order
        self.auth_attempts = 0
        self.auths = 0
        self.rest_requests: list[RestRequest] = []
        self.port = 0
        self.rest_port = 0
        self._open: set[StreamClient] = set()
        self._servers: list[Server] = []
        self._resume: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: _RestServer | None = None
        self._http_thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the REST data and counters, shared by its threads
        self._bars: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._trades: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._rate_limited = 0
        self._answer_before_limit = 0  # REST requests answered before `_rate_limited` starts
        self.retry_after: float | None = None

    # --- lifecycle ---

    def __enter__(self) -> AlpacaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> AlpacaServer:
        """Listen on two free loopback ports; stopped again if either fails to start."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="alpaca-stream", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._listen())
            self._http = _RestServer(("127.0.0.1", 0), _RestHandler)
            self._http.alpaca = self
            self.rest_port = self._http.server_address[1]
            self._http_thread = threading.Thread(
                target=self._http.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="alpaca-rest",
                daemon=True,
            )
            self._http_thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Drop every connection and join both threads; safe to call twice."""
        if self._http is not None:
            if self._http_thread is not None:
                self._http.shutdown()
                self._http_thread.join(WAIT)
            self._http.server_close()
            self._http = self._http_thread = None
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(WAIT)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    def stream_url(self, feed: str = "iex") -> str:
        return f"ws://127.0.0.1:{self.port}/v2/{feed}"

    @property
    def rest_url(self) -> str:
        """The base URL for `StockHistoricalDataClient(url_override=...)`."""
        return f"http://127.0.0.1:{self.rest_port}"

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("AlpacaServer is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT)

    async def _listen(self) -> None:
        server = await serve(
            self._handle,
            "127.0.0.1",
            self.port,  # 0 the first time; the same port again after an outage
            process_request=self._check_path,
        )
        self.port = server.sockets[0].getsockname()[1]
        self._servers.append(server)

    async def _shutdown(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        await self._kill()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await asyncio.wait_for(server.wait_closed(), WAIT)

    # --- what a test does to the stream ---

    def send_trades(self, trades: Iterable[Mapping[str, Any]]) -> int:
        """Push trades (S, i, x, p, s, c, t, z) to the connections subscribed to their
        symbol or `*`; returns how many messages went out, over all connections."""
        return self._push("trades", trades)

    def send_quotes(self, quotes: Iterable[Mapping[str, Any]]) -> int:
        """Push quotes (S, bx, bp, bs, ax, ap, as, c, t, z); see `send_trades`."""
        return self._push("quotes", quotes)

    def send_bars(self, bars: Iterable[Mapping[str, Any]]) -> int:
        """Push minute bars (S, o, h, l, c, v, vw, n, t); see `send_trades`. alpaca-py
        rejects a bar without `n` and `vw`."""
        return self._push("bars", bars)

    def wait_subscribed(
        self,
        *,
        trades: Iterable[str] = (),
        quotes: Iterable[str] = (),
        bars: Iterable[str] = (),
        timeout: float = 30.0,
    ) -> StreamClient:
        """The open, authenticated connection subscribed to at least these symbols, once
        there is one: data pushed before that would reach nobody. Fails the test otherwise."""
        wanted = {"trades": set(trades), "quotes": set(quotes), "bars": set(bars)}

        def subscribed() -> StreamClient | None:
            return self._call(self._find_subscribed(wanted))

        return wait_for(subscribed, timeout=timeout, what=f"a subscription to {wanted}")  # type: ignore[return-value]

    def kill_connections(self) -> int:
        """Drop every open connection at the TCP level, as a crash would; returns how many."""
        return self._call(self._kill())

    def refuse_connections(self, seconds: float | None = None) -> None:
        """Stop listening (connection refused), for `seconds` or until
        `accept_connections()`; open connections are left alone (see `kill_connections`)."""
        self._call(self._refuse(seconds))

    def accept_connections(self) -> None:
        """Listen again on the same port after `refuse_connections()`."""
        self._call(self._accept())

    @property
    def open_connections(self) -> list[StreamClient]:
        return sorted(self._open, key=lambda client: client.id)

    def messages(self, action: str) -> list[dict[str, Any]]:
        """What clients sent with this `action` (auth, subscribe, unsubscribe), in order."""
        return [m for m in list(self.received) if isinstance(m, dict) and m.get("action") == action]

    def _push(self, channel: str, messages: Iterable[Mapping[str, Any]]) -> int:
        prepared = []
        for message in messages:
            if not isinstance(message.get("S"), str) or "t" not in message:
                raise ValueError(f"a {channel} message needs `S` and `t`: {message!r}")
            to_ns(message["t"])  # a naive datetime fails here, in the test's thread
            prepared.append({"T": DATA_TYPES[channel], **message})
        return self._call(self._deliver(channel, prepared))

    async def _deliver(self, channel: str, messages: list[dict[str, Any]]) -> int:
        delivered = 0
        for client in self.open_connections:
            mine = [m for m in messages if client.authenticated and client.wants(channel, m["S"])]
            if not mine:
                continue
            try:
                if self.malformed:
                    await self._send_malformed(client, mine[0])
                for start in range(0, len(mine), self.batch_size):
                    await self._send(client, mine[start : start + self.batch_size])
            except ConnectionClosed:
                continue
            delivered += len(mine)
        return delivered

    async def _send_malformed(self, client: StreamClient, sample: dict[str, Any]) -> None:
        """A frame no decoder reads (0xc1 is never used in msgpack), then a message whose
        fields have the wrong types, alone in its frame so the good ones still arrive."""
        await client.ws.send(b"\xc1\xc1" if client.encoding == "msgpack" else "{not json")
        wrong = {"T": sample["T"], "S": sample["S"], "p": "n/a", "s": "n/a", "t": "yesterday"}
        wrong.update({"o": "n/a", "bp": "n/a", "ap": "n/a"})
        await self._send(client, [wrong])

    async def _find_subscribed(self, wanted: dict[str, set[str]]) -> StreamClient | None:
        for client in self.open_connections:
            if client.authenticated and all(
                symbols <= set(client.subscriptions[channel]) for channel, symbols in wanted.items()
            ):
                return client
        return None

    async def _kill(self) -> int:
        clients = self.open_connections
        for client in clients:
            self._open.discard(client)  # it no longer counts towards the connection limit
            client.ws.transport.abort()
        return len(clients)

    async def _refuse(self, seconds: float | None) -> None:
        for server in self._servers:
            server.close(close_connections=False)
        if seconds is not None:
            self._resume = asyncio.get_running_loop().call_later(seconds, self._accept_later)

    def _accept_later(self) -> None:
        self._resume = None
        task = asyncio.get_running_loop().create_task(self._accept())
        self._tasks.add(task)  # held, so it is not collected before it runs
        task.add_done_callback(self._tasks.discard)

    async def _accept(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if not any(server.is_serving() for server in self._servers):
            await self._listen()

    # --- the stream protocol ---

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        """Only `/v2/iex` and `/v2/sip` upgrade; anything else is a plain 404."""
        if request.path not in {f"/v2/{feed}" for feed in FEEDS}:
            return connection.respond(404, "Not Found\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # noqa: S101 — set before any handler runs
        headers = ws.request.headers
        client = StreamClient(
            id=len(self.clients) + 1,
            feed=ws.request.path.rsplit("/", 1)[-1],
            encoding="msgpack" if "msgpack" in headers.get("Content-Type", "") else "json",
            headers=dict(headers.raw_items()),
            ws=ws,
        )
        self.clients.append(client)
        self._open.add(client)
        try:
            if self.close_at_once:
                await ws.close()
            elif self.never_answer:
                await ws.wait_closed()
            else:
                await self._send(client, [{"T": "success", "msg": "connected"}])
                await self._converse(client)
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(client)

    async def _converse(self, client: StreamClient) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.auth_timeout
        while True:
            if client.authenticated:
                raw = await client.ws.recv()
            else:
                try:
                    async with asyncio.timeout(max(deadline - loop.time(), 0)):
                        raw = await client.ws.recv()
                except TimeoutError:
                    await self._error(client, 404)
                    await client.ws.close()
                    return
            if not await self._on_message(client, raw):
                await client.ws.close()
                return

    async def _on_message(self, client: StreamClient, raw: str | bytes) -> bool:
        """Answer one client message; False closes the connection."""
        message = _decode(raw)
        client.received.append(message)
        self.received.append(message)
        action = message.get("action") if isinstance(message, dict) else None
        if action == "auth":
            return await self._auth(client, message)
        if action in {"subscribe", "unsubscribe"}:
            if not client.authenticated:
                await self._error(client, 401)
            else:
                await self._subscribe(client, message, add=action == "subscribe")
            return True
        await self._error(client, 400)
        return True

    async def _auth(self, client: StreamClient, message: dict[str, Any]) -> bool:
        self.auth_attempts += 1
        if client.authenticated:
            await self._error(client, 403)
            return True
        if self.auth_fails or (message.get("key"), message.get("secret")) != (
            self.key,
            self.secret,
        ):
            await self._error(client, 402)
            return False
        peers = [c for c in self._open if c.key == self.key and c.feed == client.feed]
        if len(peers) >= self.connection_limit:
            await self._error(client, 406)
            return False
        client.key = self.key
        self.auths += 1
        await self._send(client, [{"T": "success", "msg": "authenticated"}])
        return True

    async def _subscribe(self, client: StreamClient, message: dict[str, Any], *, add: bool) -> None:
        changes: dict[str, list[str]] = {}
        for channel in CHANNELS:
            if channel not in message:
                continue
            symbols = message[channel]
            if not isinstance(symbols, list) or not all(
                isinstance(s, str) and (s == "*" or SYMBOL.match(s)) for s in symbols
            ):
                await self._error(client, 400)
                return
            changes[channel] = symbols
        updated = {channel: dict(symbols) for channel, symbols in client.subscriptions.items()}
        for channel, symbols in changes.items():
            for symbol in symbols:
                if add:
                    updated[channel][symbol] = None
                else:
                    updated[channel].pop(symbol, None)
        distinct = {s for symbols in updated.values() for s in symbols if s != "*"}
        if self.symbol_limit is not None and len(distinct) > self.symbol_limit:
            await self._error(client, 405)
            return
        client.subscriptions = updated
        await self._send(client, [client.subscription_message()])

    async def _error(self, client: StreamClient, code: int) -> None:
        await self._send(client, [{"T": "error", "code": code, "msg": ERRORS[code]}])

    async def _send(self, client: StreamClient, messages: list[dict[str, Any]]) -> None:
        """One frame: binary msgpack or text JSON, as the client's Content-Type asked."""
        as_msgpack = client.encoding == "msgpack"
        wire = [
            {k: _wire_time(v, as_msgpack=as_msgpack) if k == "t" else v for k, v in m.items()}
            for m in messages
        ]
        if as_msgpack:
            await client.ws.send(msgpack.packb(wire))
        else:
            await client.ws.send(json.dumps(wire, separators=(",", ":")))

    # --- the REST history ---

    def load_bars(
        self, symbol: str, bars: Iterable[Mapping[str, Any]], *, timeframe: str = "1Min"
    ) -> None:
        """Bars (t, o, h, l, c, v, n, vw) that `/v2/stocks/bars` serves for this symbol and
        timeframe (`1Min` and `1T` are the same); added to what is there, kept in time order."""
        self._load(self._bars, (symbol, _timeframe(timeframe)), bars)

    def load_trades(self, symbol: str, trades: Iterable[Mapping[str, Any]]) -> None:
        """Trades (t, x, p, s, c, i, z) that `/v2/stocks/trades` serves for this symbol."""
        self._load(self._trades, (symbol, ""), trades)

    def rate_limit_next(self, count: int = 1) -> None:
        """Answer the next `count` REST requests with 429, as the vendor's rate limit does."""
        with self._lock:
            self._rate_limited = count

    def rate_limit_after(self, answered: int, count: int = 1) -> None:
        """Answer the next `answered` REST requests as usual, then `count` with 429: a rate
        limit that starts half-way through a client's paging."""
        with self._lock:
            self._answer_before_limit = answered
            self._rate_limited = count

    def _load(
        self,
        store: dict[tuple[str, str], list[dict[str, Any]]],
        key: tuple[str, str],
        items: Iterable[Mapping[str, Any]],
    ) -> None:
        rows = [{**item, "t": to_ns(item["t"])} for item in items]
        with self._lock:
            merged = [*store.get(key, []), *rows]
            merged.sort(key=lambda row: row["t"])
            store[key] = merged

    def _rest(self, target: str, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for one GET, recorded in `rest_requests`."""
        parts = urlsplit(target)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        status, body = self._answer(parts.path, params, headers)
        with self._lock:
            self.rest_requests.append(RestRequest(parts.path, params, dict(headers), status))
        return status, body

    def _answer(
        self, path: str, params: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._answer_before_limit > 0:
                self._answer_before_limit -= 1
            elif self._rate_limited > 0:
                self._rate_limited -= 1
                return 429, {"message": "too many requests."}
        credentials = (headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY"))
        if credentials != (self.key, self.secret):
            return 403, {"message": "forbidden"}
        kinds = {"/v2/stocks/bars": "bars", "/v2/stocks/trades": "trades"}
        if path not in kinds:
            return 404, {"message": "not found"}
        try:
            query = HistoryQuery.parse(params, bars=kinds[path] == "bars")
        except BadRequest as error:
            return error.status, {"message": error.message}
        return 200, self._page(kinds[path], query)

    def _page(self, kind: str, query: HistoryQuery) -> dict[str, Any]:
        """One page, ordered by symbol then time; the token is the next row's position."""
        store = self._bars if kind == "bars" else self._trades
        start, end = to_ns(query.start), to_ns(query.end)
        rows: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            for symbol in sorted(set(query.symbols)):
                items = [
                    r for r in store.get((symbol, query.timeframe), []) if start <= r["t"] <= end
                ]
                if query.descending:
                    items.reverse()
                rows.extend((symbol, item) for item in items)
        size = min(query.limit, self.page_size)
        page = rows[query.offset : query.offset + size]
        after = query.offset + len(page)
        data: dict[str, list[dict[str, Any]]] = {}
        for symbol, item in page:
            data.setdefault(symbol, []).append(
                {
                    "t": rfc3339(item["t"]),
                    **{k: v for k, v in item.items() if k not in ("t", "S", "T")},
                }
            )
        token = _page_token(after) if after < len(rows) else None
        return {kind: data, "next_page_token": token}


# --- REST parameters -----------------------------------------------------------------------


class BadRequest(Exception):
    """A query the vendor would refuse: 400 for what does not parse, 422 for what parses
    but makes no sense."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class HistoryQuery:
    """The parameters of `/v2/stocks/bars|trades`, checked as the vendor checks them."""

    symbols: tuple[str, ...]
    timeframe: str  # canonical (`1Min`), "" for trades
    start: datetime
    end: datetime  # inclusive
    limit: int
    offset: int
    descending: bool

    @classmethod
    def parse(cls, params: Mapping[str, str], *, bars: bool) -> HistoryQuery:
        symbols = tuple(s.strip() for s in params.get("symbols", "").split(",") if s.strip())
        if not symbols:
            raise BadRequest("missing symbols")
        for symbol in symbols:
            if not SYMBOL.match(symbol):
                raise BadRequest(f"invalid symbol: {symbol}")
        timeframe = _timeframe(params.get("timeframe", "")) if bars else ""
        now = datetime.now(UTC)
        start = _time(params, "start", now.replace(hour=0, minute=0, second=0, microsecond=0))
        end = _time(params, "end", now, end_of_day=True)
        if end < start:
            raise BadRequest("end should not be before start", 422)
        _choice(params, "sort", {"asc", "desc"})
        _choice(params, "feed", REST_FEEDS)
        for adjustment in params.get("adjustment", "raw").split(","):
            if adjustment not in ADJUSTMENTS:
                raise BadRequest(f"invalid adjustment: {adjustment}")
        return cls(
            symbols=symbols,
            timeframe=timeframe,
            start=start,
            end=end,
            limit=_limit(params.get("limit")),
            offset=_page_offset(params.get("page_token")),
            descending=params.get("sort") == "desc",
        )


def _timeframe(text: str) -> str:
    """`5Min`, `5T` -> `5Min`; `1D` -> `1Day`; BadRequest when it is not one."""
    match = TIMEFRAME.match(text)
    if not match:
        raise BadRequest(f"invalid timeframe: {text!r}")
    amount, unit = int(match[1]), TIMEFRAME_UNITS[match[2]]
    if amount not in TIMEFRAME_AMOUNTS[unit]:
        raise BadRequest(f"invalid timeframe: {text!r}", 422)
    return f"{amount}{unit}"


def _time(
    params: Mapping[str, str], name: str, default: datetime, *, end_of_day: bool = False
) -> datetime:
    """RFC-3339 with an offset, or YYYY-MM-DD (as an end: the whole day)."""
    text = params.get(name)
    if text is None:
        return default
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            return day + timedelta(days=1, microseconds=-1) if end_of_day else day
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})", text):
            raise ValueError(text)
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # nanoseconds: µs is all Python keeps
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise BadRequest(f"invalid {name}: {text!r}") from None


def _choice(params: Mapping[str, str], name: str, allowed: set[str]) -> None:
    if name in params and params[name] not in allowed:
        raise BadRequest(f"invalid {name}: {params[name]!r}")


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"invalid limit: {text!r}")
    return int(text)


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("invalid page token") from None
    if not isinstance(offset, int) or offset < 0:
        raise BadRequest("invalid page token")
    return offset


def _decode(raw: str | bytes) -> Any:
    """A client message: msgpack in a binary frame, JSON in a text one; the raw frame when
    it is neither (the caller answers 400)."""
    try:
        return json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return raw


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True
    alpaca: AlpacaServer


class _RestHandler(BaseHTTPRequestHandler):
    """HTTP/1.0, one request a connection: nothing lingers when the server stops."""

    server: _RestServer

    def do_GET(self) -> None:
        status, body = self.server.alpaca._rest(self.path, self.headers)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        if status == 429 and self.server.alpaca.retry_after is not None:
            self.send_header("Retry-After", f"{self.server.alpaca.retry_after:g}")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test's output is for the test."""
