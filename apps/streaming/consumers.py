"""The WebSocket feed (docs/contracts.md#websocket): thin consumers over selectors and messages.

`/ws/stocks/{symbol}` sends a snapshot, then one `tick` frame per tick of that symbol.
`/ws/market` sends frames that are JSON arrays of messages: the ticks of the symbols a
client subscribed to (one frame per pipeline batch, or with `"every"` the newest tick per
symbol once a period), an `overview` about once a second, and answers to what the client
sends.

The consumers own their connections: authentication, the first messages, the client's
messages and the flood limits. What the pipeline publishes is written by the process's
broadcaster (`broadcast.py`), where each socket has its place by feed and subscription.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import datetime

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.accounts import roles
from apps.market import keys, selectors
from apps.market.messages import history_tick, overview_message
from apps.market.models import TICKER_PATTERN, Symbol
from apps.ops.redis_client import redis_client
from apps.streaming import close_codes, messages
from apps.streaming import metrics as ws_metrics
from apps.streaming.broadcast import (
    ALERTS,
    ALL,
    ARRAY,
    EACH,
    MARKET,
    MAX_PERIOD,
    MIN_PERIOD,
    NOTHING,
    STOCKS,
    Every,
    Framing,
    SkipSeen,
    Socket,
    broadcaster,
    conflation_period,
)
from apps.streaming.outbox import SocketFlow
from apps.streaming.publisher import watch_symbol

logger = logging.getLogger(__name__)

SNAPSHOT_TICKS = 120  # the history a /ws/stocks/{symbol} snapshot carries
MAX_MESSAGE_BYTES = messages.MAX_MESSAGE_BYTES
FLOOD_MESSAGES_PER_SECOND = 20
# Replies (acks, errors) waiting for a client that does not read: past this, it is closed.
MAX_PENDING_REPLIES = 2 * FLOOD_MESSAGES_PER_SECOND
UNKNOWN_LISTED = 50  # an error names at most this many unknown symbols
BAD_EVERY = f'"every" must be 0 (every tick) or seconds from {MIN_PERIOD:g} to {MAX_PERIOD:g}'


@database_sync_to_async
def _known_symbol(raw: str) -> str | None:
    ticker = raw.upper()
    if not TICKER_PATTERN.match(ticker):  # never send PostgreSQL what cannot be a ticker
        return None
    return Symbol.objects.filter(ticker=ticker).values_list("ticker", flat=True).first()


@database_sync_to_async
def _stock_snapshot(ticker: str) -> dict:
    # The hot state first: it is written after its tick commits, so history up to its time
    # is all stored, and nothing newer slips into the history ahead of the price.
    hot = selectors.hot_states([ticker])[ticker]
    until = datetime.fromisoformat(hot["ts"]) if hot else None
    ticks = selectors.recent_ticks(ticker, SNAPSHOT_TICKS, until=until)
    return messages.snapshot(ticker, hot, [history_tick(*t) for t in ticks])


@database_sync_to_async
def _overview() -> dict:
    return overview_message(selectors.market_overview())


@database_sync_to_async
def _known_tickers() -> set[str]:
    return set(Symbol.objects.values_list("ticker", flat=True))


@database_sync_to_async
def _signed_in_may(user, actions: tuple[str, ...]) -> dict[str, bool]:
    return {action: roles.may(user, action) for action in actions}


async def may(user, *actions: str) -> dict[str, bool]:
    """What `user` may do of `actions` (docs/security.md#roles). Anonymous clients are
    answered without a database hop (they need no query), so the public feed's many
    sockets cost no thread each; a signed-in user's permissions are read in a thread."""
    if user is None or not user.is_authenticated:
        return {action: roles.may(user, action) for action in actions}
    return await _signed_in_may(user, actions)


def refusal(user) -> int:
    """The close code for a client refused market data: 4401 when it has not signed in
    (or its token was bad), 4403 when it has but its role does not allow reading."""
    signed_in = user is not None and user.is_authenticated
    return close_codes.FORBIDDEN if signed_in else close_codes.UNAUTHORIZED


class FeedConsumer(AsyncWebsocketConsumer):
    """Authentication, the socket's place in the broadcaster and the flood limits, shared by
    both feeds (and the gateway's `/stocks`).

    The consumer owns the connection; what the pipeline publishes reaches the socket through
    the process's broadcaster (`apps/streaming/broadcast.py`), not through the consumer.
    """

    channel_layer_alias = None  # no channel per socket: the broadcaster receives for all
    framing: Framing = ARRAY

    def open_flow(self) -> None:
        """The socket's write gate, its place with the broadcaster (held until `start`) and
        its flood window, before it is accepted."""
        self.recent: deque[float] = deque(maxlen=FLOOD_MESSAGES_PER_SECOND + 1)
        self.gate = SocketFlow.attach(self.base_send)
        self.socket = Socket.attach(self.base_send, self.gate, self.framing)
        self.broadcaster = broadcaster()
        self.broadcaster.opened(self.socket)
        ws_metrics.opened(self)

    async def connect(self) -> None:
        self.open_flow()
        await self.accept()
        if self.scope.get("token_invalid"):
            await self.close(code=close_codes.UNAUTHORIZED)
            return
        user = self.scope.get("user")
        self.allowed = await may(user, roles.READ_MARKET, roles.OWN_ALERTS)
        if not self.allowed[roles.READ_MARKET]:
            await self.close(code=refusal(user))
            return
        # What the client sends before it has been answered waits in the kernel, not here.
        self.gate.reading(False)
        if await self.start():
            self.gate.reading(True)

    async def start(self) -> bool:
        """Join the broadcaster's feeds and start the socket with its first messages; False
        when the socket was closed."""
        raise NotImplementedError

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the connection: nothing more is written to it."""
        if hasattr(self, "socket"):
            self.socket.close()
        await super().close(code=code, reason=reason)

    async def disconnect(self, code: int) -> None:
        ws_metrics.closed(self)
        if not hasattr(self, "socket"):
            return
        self.socket.close()
        self.broadcaster.closed(self.socket)
        await self.broadcaster.leave(self.socket)
        dropped = self.socket.outbox.dropped
        if dropped:
            await sync_to_async(redis_client().incrby)(keys.WS_TICKS_DROPPED, dropped)
            logger.info("socket closed (%s); %d ticks dropped", code, dropped)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        """Answer a client message, unless the client floods or never reads its answers."""
        if self.socket.closed:  # closed by us (4401, 4404): its messages go unanswered
            return
        now = time.monotonic()
        self.recent.append(now)
        flooding = (
            len(self.recent) > FLOOD_MESSAGES_PER_SECOND and now - self.recent[0] < 1.0
        ) or self.gate.backlog() > FLOOD_MESSAGES_PER_SECOND  # more waiting than a second's
        if flooding or len(self.socket.outbox.others) >= MAX_PENDING_REPLIES:
            ws_metrics.flooded(self)
            await self.close(code=close_codes.FLOODING)
            self.gate.drop()
            # A dropped (muted) connection never reports its disconnect to us: end the
            # socket's place in the broadcaster now, as its disconnect would (raises
            # StopConsumer).
            flooded = {"type": "websocket.disconnect", "code": close_codes.FLOODING}
            await self.websocket_disconnect(flooded)
        self.socket.send(await self.answer(text_data, bytes_data))

    async def answer(self, text: str | None, data: bytes | None) -> list[dict]:
        """An `error` saying why the message is not read: a feed that takes none still
        says what was wrong with a malformed one (docs/contracts.md#bad-messages)."""
        try:
            messages.read_message(text, data, messages.STOCK_MESSAGES)
        except messages.BadMessage as bad:
            return [messages.error(str(bad))]
        raise AssertionError("a feed that takes no messages read one")


class StockConsumer(FeedConsumer):
    """`/ws/stocks/{symbol}`: a snapshot, then each tick of one symbol."""

    framing = EACH

    async def start(self) -> bool:
        raw = self.scope["url_route"]["kwargs"]["symbol"]
        self.ticker = await _known_symbol(raw)
        if self.ticker is None:
            await self.close(code=close_codes.UNKNOWN_SYMBOL)
            return False
        # Join first, then read the snapshot, so no tick falls between the two; ticks the
        # snapshot already holds are skipped (`SkipSeen`).
        await self.broadcaster.join(self.socket, STOCKS, self.ticker)
        await sync_to_async(watch_symbol)(self.ticker, 1)
        self.watching = True
        snapshot = await _stock_snapshot(self.ticker)
        seen = {t["ts"] for t in snapshot["history"]} | {snapshot["ts"]}
        self.socket.start([snapshot], keep=SkipSeen(seen))
        return True

    async def disconnect(self, code: int) -> None:
        if getattr(self, "watching", False):
            await sync_to_async(watch_symbol)(self.ticker, -1)
        await super().disconnect(code)


class MarketConsumer(FeedConsumer):
    """`/ws/market`: ticks of the subscribed symbols, the overview, the signed-in user's
    alerts, answers. Every frame is a JSON array."""

    async def start(self) -> bool:
        self.all_symbols = False
        self.symbols: set[str] = set()
        self.every = 0.0  # the conflation period; 0: every tick
        await self.broadcaster.join(self.socket, MARKET, NOTHING)
        if self.allowed[roles.OWN_ALERTS]:  # a signed-in user whose role keeps alert rules
            await self.broadcaster.join(self.socket, ALERTS, self.scope["user"].pk)
        self.socket.start(latest=await _overview())
        return True

    async def answer(self, text: str | None, data: bytes | None) -> list[dict]:
        """The answer to a subscription change: checked against `MARKET_MESSAGES`, so a bad
        message gets an `error` naming its field and changes nothing."""
        try:
            action, request = messages.read_message(text, data, messages.MARKET_MESSAGES)
            every = conflation_period(request["every"]) if "every" in request else None
        except messages.BadMessage as bad:
            return [messages.error(str(bad), **({"field": bad.field} if bad.field else {}))]
        except ValueError:
            return [messages.error(BAD_EVERY, field="every")]
        return await self._change_subscription(action, request["symbols"], every)

    async def _change_subscription(
        self, action: str, symbols: list[str], every: float | None
    ) -> list[dict]:
        replies = []
        everything = "*" in symbols
        named = set(symbols) - {"*"}
        known = await _known_tickers() if named or self.all_symbols else set()
        unknown = sorted(named - known)
        if unknown:
            replies.append(
                messages.error(
                    f"unknown symbols ({len(unknown)})", symbols=unknown[:UNKNOWN_LISTED]
                )
            )
        named &= known
        if action == "subscribe":
            self.all_symbols = self.all_symbols or everything
            self.symbols |= named
        elif everything:
            self.all_symbols, self.symbols = False, set()
        elif self.all_symbols:  # everything but these
            self.all_symbols, self.symbols = False, known - named
        else:
            self.symbols -= named
        if every is not None:
            self.every = every
        # The new set takes effect with the next message the broadcaster delivers (or, with
        # a period, flushes); the answer is written before it (nothing awaits between here
        # and the write).
        key = ALL if self.all_symbols else frozenset(self.symbols)
        self.broadcaster.move(self.socket, MARKET, Every(key, self.every) if self.every else key)
        current = ["*"] if self.all_symbols else sorted(self.symbols)
        replies.append(messages.subscribed(current, self.every))
        return replies


class NoSuchFeed(AsyncWebsocketConsumer):
    """Every other WebSocket path: accepted, then closed with 4404.

    Without it Channels' router raises "No route found", which Daphne logs as a traceback
    and answers with an HTTP 500; a client deserves the same clear "not found" as for an
    unknown symbol.
    """

    channel_layer_alias = None  # it takes no group messages

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=close_codes.UNKNOWN_PATH)
