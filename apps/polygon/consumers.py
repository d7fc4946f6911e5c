"""The vendor's WebSocket `/stocks` (docs/polygon.md#websocket): `T` trades and `AM` minute
aggregates over the same fan-out as `/ws/market`.

The socket joins the `market` group once authenticated and translates its batches (the
`A` and `AM` events are summed in `apps/polygon/aggregates.py`). The
outbox, the write backpressure and the flood limits are `/ws/market`'s (`FeedConsumer`):
pending trades coalesce per symbol while the client does not read, a client that sends
more than 20 messages a second is closed with 4429.
"""

from __future__ import annotations

import time

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework.authtoken.models import Token

from apps.polygon import messages, selectors
from apps.polygon.aggregates import SecondAggregates, minute_bars
from apps.polygon.selectors import venues
from apps.streaming import close_codes
from apps.streaming.consumers import (
    MAX_MESSAGE_BYTES,
    FeedConsumer,
)
from apps.streaming.groups import MARKET_GROUP

SERVED = {"T": "trades", "Q": "quotes", "A": "second aggregates", "AM": "minute aggregates"}
FRAME_EVENTS = 2000  # events per frame: well under the clients' 1 MiB frame limit


def _dumps(payload: object) -> str:
    return orjson.dumps(payload).decode()


@database_sync_to_async
def _key_user(key: str):
    """The active user whose API token is `key` (as `apps.polygon.auth` reads REST keys)."""
    if len(key) > 40 or "\x00" in key:  # a token's key: 40 characters
        return None
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


async def _ensure_venues(tickers) -> None:
    if venues.stale_for(tickers):
        venues.loaded_at = time.monotonic()  # one reload, however many sockets ask meanwhile
        await database_sync_to_async(venues.reload)()


class StocksConsumer(FeedConsumer):
    """`/stocks`: the vendor's handshake (connected, auth), subscriptions by topic
    (`T.AAPL`, `AM.*`), then `T`, `Q`, `A` and `AM` messages. Every frame is a JSON array."""

    async def connect(self) -> None:
        # `FeedConsumer.connect` checks the caller at the handshake; here the key comes
        # later, in the auth action, so the socket opens for everyone.
        self.open_flow()
        self.authenticated = False
        self.topics: dict[str, set[str]] = {prefix: set() for prefix in SERVED}
        self.minutes: dict[str, int] = {}  # AM symbols: the minute of their last tick seen
        self.seconds = SecondAggregates()
        await self.accept()
        await self.send(text_data=_dumps([messages.status("connected", "Connected Successfully")]))
        self.start_sending()

    def frames(self, pending: list[dict]) -> list[object]:
        out = []
        for message in pending:
            if message.get("type") == "tick":
                out.append(messages.trade(message, *venues.of(message["symbol"])))
            elif "ev" in message:  # a status
                out.append(message)
            else:  # a Q, A or AM event, queued under (event, symbol): coalesces by symbol
                out.append(message["event"])
        return [out[i : i + FRAME_EVENTS] for i in range(0, len(out), FRAME_EVENTS)]

    async def market_batch(self, event: dict) -> None:
        ticks = event["messages"]
        trades, quotes, aggs = self.topics["T"], self.topics["Q"], self.topics["AM"]
        if trades:
            sent = ticks if "*" in trades else [t for t in ticks if t["symbol"] in trades]
            if sent:
                await _ensure_venues({t["symbol"] for t in sent})
                self.queue_ticks(sent)
        if quotes:
            every = "*" in quotes
            quoted = [t for t in ticks if t["bid"] is not None
                      and (every or t["symbol"] in quotes)]  # fmt: skip
            if quoted:
                await _ensure_venues({t["symbol"] for t in quoted})
                self.queue_ticks([{"symbol": ("Q", t["symbol"]),
                                   "event": messages.quote(t, *venues.of(t["symbol"]))}
                                  for t in quoted])  # fmt: skip
        if self.topics["A"]:
            closed = self.seconds.add(ticks, self.topics["A"])
            self.queue_ticks([{"symbol": ("A", e["sym"]), "event": e} for e in closed])
        if aggs:
            closed = []
            every = "*" in aggs
            for tick in ticks:
                symbol = tick["symbol"]
                if every or symbol in aggs:
                    minute = messages.minute_of(tick["ts"])
                    last = self.minutes.get(symbol)
                    if last is None or minute > last:
                        self.minutes[symbol] = minute
                        if last is not None:
                            closed.append((symbol, last))
            if closed:
                bars = await minute_bars.events(closed)
                self.queue_ticks([{"symbol": ("AM", e["sym"]), "event": e} for e in bars])

    async def market_overview(self, event: dict) -> None:
        """Not a vendor event: dropped."""

    async def answer(self, text: str | None, data: bytes | None) -> list[dict]:
        raw = text.encode() if text is not None else data or b""
        if len(raw) > MAX_MESSAGE_BYTES:
            return [messages.status("error", f"message too large: {len(raw)} bytes, the limit "
                                  f"is {MAX_MESSAGE_BYTES}")]  # fmt: skip
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [messages.status("error", "malformed JSON")]
        action = request.get("action") if isinstance(request, dict) else None
        params = request.get("params") if isinstance(request, dict) else None
        if action == "auth":
            return await self._auth(params)
        if action not in ("subscribe", "unsubscribe"):
            return [messages.status("error", 'unknown action: use "auth", "subscribe" or '
                                  '"unsubscribe"')]  # fmt: skip
        if not self.authenticated:
            return [messages.status("error", 'not authorized: send {"action":"auth",'
                                  '"params":KEY} first')]  # fmt: skip
        if not isinstance(params, str) or not params.strip():
            return [messages.status("error", '"params" must be topics such as "T.AAPL,AM.*"')]
        return await self._change(action, [t.strip() for t in params.split(",") if t.strip()])

    async def _auth(self, params: object) -> list[dict]:
        if self.authenticated:
            return [messages.status("success", "already authenticated")]
        user = await _key_user(params) if isinstance(params, str) and params else None
        if user is None and not settings.MARKETFLUX_PUBLIC_READ:
            # The client raises AuthError on this frame and does not reconnect.
            await self.send(text_data=_dumps([messages.status("auth_failed",
                                                            "authentication failed")]))  # fmt: skip
            await self.close(code=close_codes.UNAUTHORIZED)
            return []
        self.authenticated = True
        await self.channel_layer.group_add(MARKET_GROUP, self.channel_name)
        self.groups.append(MARKET_GROUP)  # Channels leaves it on disconnect
        return [messages.status("auth_success", "authenticated")]

    async def _change(self, action: str, topics: list[str]) -> list[dict]:
        parsed = []
        for topic in topics:
            prefix, _, symbol = topic.partition(".")
            parsed.append((topic, prefix, symbol if symbol == "*" else symbol.upper()))
        named = {s for _, p, s in parsed if p in SERVED and s and s != "*"}
        known = (
            await database_sync_to_async(selectors.known_tickers)(tickers=named) if named else set()
        )
        replies = []
        for topic, prefix, symbol in parsed:
            if prefix not in SERVED or not symbol:
                replies.append(messages.status("error", f"{topic}: unknown topic; served: "
                                             "T, Q, A and AM, as T.<symbol> or T.*"))  # fmt: skip
            elif symbol != "*" and symbol not in known:
                replies.append(messages.status("error", f"{topic}: unknown symbol"))
            elif action == "subscribe":
                self.topics[prefix].add(symbol)
                replies.append(messages.status("success", f"subscribed to: {prefix}.{symbol}"))
            else:
                self.topics[prefix].discard(symbol)
                replies.append(messages.status("success", f"unsubscribed to: {prefix}.{symbol}"))
        aggs = self.topics["AM"]
        if "*" not in aggs:
            self.minutes = {s: m for s, m in self.minutes.items() if s in aggs}
        self.seconds.keep_only(self.topics["A"])
        return replies
