"""The vendor's WebSocket `/stocks` (docs/polygon.md#websocket): `T` trades and `AM` minute
aggregates over the same fan-out as `/ws/market`.

The socket joins the `market` group once authenticated and translates its batches. The
outbox, the write backpressure and the flood limits are `/ws/market`'s (`FeedConsumer`):
pending trades coalesce per symbol while the client does not read, a client that sends
more than 20 messages a second is closed with 4429.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework.authtoken.models import Token

from apps.ops.timestamps import UNIX_EPOCH
from apps.polygon import messages, selectors
from apps.polygon.selectors import venues
from apps.streaming import close_codes
from apps.streaming.consumers import (
    MAX_MESSAGE_BYTES,
    FeedConsumer,
)
from apps.streaming.groups import MARKET_GROUP

logger = logging.getLogger(__name__)

SERVED = {"T": "trades", "Q": "quotes", "A": "second aggregates", "AM": "minute aggregates"}
FRAME_EVENTS = 2000  # events per frame: well under the clients' 1 MiB frame limit
KEEP_MINUTES = 5  # closed minutes whose AM events stay cached (late sockets of a batch)


def _dumps(payload: object) -> str:
    return orjson.dumps(payload).decode()


@database_sync_to_async
def _key_user(key: str):
    """The active user whose API token is `key` (as `apps.polygon.auth` reads REST keys)."""
    if len(key) > 40 or "\x00" in key:  # a token's key: 40 characters
        return None
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


def _at(micros: int):
    return UNIX_EPOCH + timedelta(microseconds=micros)


async def _ensure_venues(tickers) -> None:
    if venues.stale_for(tickers):
        venues.loaded_at = time.monotonic()  # one reload, however many sockets ask meanwhile
        await database_sync_to_async(venues.reload)()


class MinuteBars:
    """`AM` events of closed minutes, read from the stored bars once per process.

    Every socket of a process sees the same batches, so each notices the same closed
    minutes; the first to ask reads them (one query for the whole batch), the others wait
    for that read. The day's volume and value are carried forward per symbol, so a closed
    minute reads its own bar, not the whole day's.
    """

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, loop) -> None:
        self._loop = loop
        self._events: dict[tuple[str, int], asyncio.Future] = {}
        # symbol -> (day µs, through minute µs, day volume, day value, day open)
        self._days: dict[str, tuple[int, int, int, float, float]] = {}

    async def events(self, closed: list[tuple[str, int]]) -> list[dict]:
        """The `AM` events of `(symbol, minute start µs)` pairs, in that order."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # futures belong to one loop (one per Daphne process)
            self._reset(loop)
        missing = sorted({k for k in closed if k not in self._events}, key=lambda k: k[1])
        if missing:
            future = loop.create_future()
            for k in missing:
                self._events[k] = future
            try:
                read = await self._read(missing)
            except Exception:
                logger.exception("could not read the bars of %d closed minutes", len(missing))
                read = {}
                for k in missing:
                    self._events.pop(k, None)
            future.set_result(read)
            cutoff = missing[-1][1] - KEEP_MINUTES * messages.MINUTE_US
            self._events = {k: f for k, f in self._events.items() if k[1] >= cutoff}
        found = []
        for k in closed:
            future = self._events.get(k)
            event = (await future).get(k) if future is not None else None
            if event is not None:
                found.append(event)
        return found

    async def _read(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
        wanted: dict[str, set[int]] = {}
        for symbol, minute in keys:
            wanted.setdefault(symbol, set()).add(minute)
        spans, starts = [], {}
        for symbol, minutes in wanted.items():
            first, last = min(minutes), max(minutes)
            day = first - first % messages.DAY_US
            carried = self._days.get(symbol)
            if carried and carried[0] == day and carried[1] < first:
                starts[symbol] = carried
                since = carried[1] + messages.MINUTE_US
            else:
                starts[symbol] = (day, day - messages.MINUTE_US, 0, 0.0, 0.0)
                since = day
            spans.append((symbol, _at(since), _at(last)))
        rows = await database_sync_to_async(selectors.minute_bars_between)(spans=spans)
        found: dict[tuple[str, int], dict] = {}
        totals = dict(starts)
        for symbol, *bar in rows:
            day, _, volume, value, day_open = totals[symbol]
            start = bar[0]
            if start - start % messages.DAY_US != day:  # the span crossed midnight UTC
                day, volume, value, day_open = start - start % messages.DAY_US, 0, 0.0, 0.0
            o, h, l, c_, v = bar[1:6]  # noqa: E741
            if not volume:
                day_open = o
            volume += v
            value += v * (h + l + c_) / 3
            totals[symbol] = (day, start, volume, value, day_open)
            if start in wanted[symbol]:
                found[(symbol, start)] = messages.minute_agg(
                    symbol, tuple(bar), day_volume=volume, day_value=value, day_open=day_open
                )
        for symbol, minutes in wanted.items():
            day, _, volume, value, day_open = totals[symbol]
            last = max(minutes)
            if last - last % messages.DAY_US != day:
                continue
            known = self._days.get(symbol)
            if known is None or (known[0], known[1]) < (day, last):
                self._days[symbol] = (day, last, volume, value, day_open)
        return found


minute_bars = MinuteBars()


class SecondAggregates:
    """A socket's `A` events, summed from the trades it receives: a second goes out when a
    trade of a later second arrives. The first second a socket sees of a symbol is not sent
    (it may have joined in the middle of it); every one after it is whole, because every
    batch reaches the socket, whatever its outbox later coalesces."""

    def __init__(self) -> None:
        self.open: dict[str, messages.SecondOfTrades] = {}

    def add(self, ticks: list[dict], wanted: set[str]) -> list[dict]:
        every = "*" in wanted
        closed = []
        for tick in ticks:
            symbol = tick["symbol"]
            if not (every or symbol in wanted):
                continue
            micros = messages.tick_micros(tick["ts"])
            start = micros - micros % messages.SECOND_US
            current = self.open.get(symbol)
            if current is None or start > current.start:
                if current is not None and current.whole:
                    closed.append(messages.second_agg(symbol, current))
                self.open[symbol] = messages.SecondOfTrades.of(
                    start, tick, whole=current is not None
                )
            elif start == current.start:
                current.add(tick)
        return closed

    def keep_only(self, wanted: set[str]) -> None:
        if "*" not in wanted:
            self.open = {s: agg for s, agg in self.open.items() if s in wanted}


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
