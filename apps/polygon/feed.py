"""What the broadcaster sends `/stocks` sockets (docs/polygon.md#websocket): each batch's
`T`, `Q`, `A` and `AM` events, built once per process and subscription set.

The socket's topics are its subscription key (`Topics.key`); every socket of a key gets the
same frames. `A` and `AM` events also depend on when a socket subscribed (`Topics.admits`),
so a socket that subscribed in the middle of a second or minute gets its own frame for the
batches that close it, put together from the same encoded events.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import orjson
from channels.db import database_sync_to_async

from apps.polygon import messages
from apps.polygon.aggregates import MinuteCloser, SecondAggregates, minute_bars
from apps.polygon.selectors import venues
from apps.streaming.broadcast import Batch, Feed, Framing, Rendered
from apps.streaming.groups import MARKET_GROUP
from apps.streaming.outbox import TICK, Item
from apps.streaming.publisher import MARKET_BATCH_EVENT

PREFIXES = ("T", "Q", "A", "AM")
SERVED = {"T": "trades", "Q": "quotes", "A": "second aggregates", "AM": "minute aggregates"}
FRAME_EVENTS = 2000  # events per frame: well under the clients' 1 MiB frame limit
FRAMING = Framing(array=True, limit=FRAME_EVENTS)
_NEVER = float("inf")


async def _ensure_venues(tickers) -> None:
    if venues.stale_for(tickers):
        venues.loaded_at = time.monotonic()  # one reload, however many sockets ask meanwhile
        await database_sync_to_async(venues.reload)()


class Topics:
    """One socket's subscriptions (`T.AAPL`, `AM.*`, ...) and, for `A` and `AM`, the batch
    since which each symbol has been covered without a break."""

    def __init__(self) -> None:
        self.since: dict[str, dict[str, int]] = {p: {} for p in PREFIXES}  # symbol or "*"
        # Symbols still covered after the subscription that began their cover was dropped
        # (`A.*` and `A.AAPL`, then `A.*` unsubscribed): when that cover began.
        self.carry: dict[str, dict[str, int]] = {"A": {}, "AM": {}}

    def key(self) -> tuple[frozenset[str], ...]:
        return tuple(frozenset(self.since[p]) for p in PREFIXES)

    def add(self, prefix: str, symbol: str, seq: int) -> None:
        """Subscribed from the batch numbered `seq` on (already subscribed: unchanged)."""
        self.since[prefix].setdefault(symbol, seq)

    def discard(self, prefix: str, symbol: str) -> None:
        subs = self.since[prefix]
        began = subs.pop(symbol, None)
        carry = self.carry.get(prefix)
        if began is None or carry is None:
            return
        if symbol == "*":  # named symbols stay covered, since the earlier of the two
            for named in subs:
                carry[named] = min(carry.get(named, began), began)
            for lost in [s for s in carry if s not in subs]:
                del carry[lost]
        elif "*" in subs:  # still covered by "*", since the earlier of the two
            carry[symbol] = min(carry.get(symbol, began), began)
        else:
            carry.pop(symbol, None)

    def admits(self, item: Item) -> bool:
        """Whether an `A` or `AM` event is for this socket (see `SecondAggregates`)."""
        prefix, symbol = item.ref
        subs = self.since[prefix]
        began = min(
            subs.get(symbol, _NEVER), subs.get("*", _NEVER), self.carry[prefix].get(symbol, _NEVER)
        )
        return began <= item.need


def _union(sets) -> set[str]:
    out: set[str] = set()
    for s in sets:
        out |= s
    return {"*"} if "*" in out else out


def _wants(topics: frozenset[str], symbol: str) -> bool:
    return "*" in topics or symbol in topics


class GatewayFeed(Feed):
    """`/stocks` sockets on the `market` group; keys are `Topics.key()`."""

    events = frozenset({MARKET_BATCH_EVENT})
    framing = FRAMING
    awaits = True  # venues and closed minutes' bars are read from the database

    def __init__(self) -> None:
        self.seconds = SecondAggregates()
        self.minutes = MinuteCloser()

    def group(self, key: Hashable) -> str:
        return MARKET_GROUP

    def idle(self) -> None:
        self.seconds = SecondAggregates()
        self.minutes = MinuteCloser()

    async def deliver(self, message: dict, sets: dict, batch: Batch | None) -> None:
        wanted = {p: _union(key[i] for key in sets) for i, p in enumerate(PREFIXES)}
        ticks, seq = batch.ticks, batch.seq
        self.seconds.keep_only(wanted["A"])
        self.minutes.keep_only(wanted["AM"])
        seconds = self.seconds.add(ticks, wanted["A"], seq) if wanted["A"] else []
        closed = self.minutes.add(ticks, wanted["AM"], seq) if wanted["AM"] else []
        traded = wanted["T"] | wanted["Q"]
        if traded:
            await _ensure_venues({ticks[n]["symbol"] for n in batch.rows(traded)})
        bars = await minute_bars.events([(s, m) for s, m, _ in closed]) if closed else []

        need = {(s, m // 1000): n for s, m, n in closed}
        a_items = [_aggregate("A", e, n) for e, n in seconds]
        am_items = [_aggregate("AM", e, need[(e["sym"], e["s"])]) for e in bars]
        trades: dict[int, Item] = {}
        quotes: dict[int, Item | None] = {}

        def trade(n: int) -> Item:
            item = trades.get(n)
            if item is None:
                tick = ticks[n]
                event = messages.trade(tick, *venues.of(tick["symbol"]))
                item = trades[n] = Item(tick["symbol"], orjson.dumps(event), TICK, tick)
            return item

        def quote(n: int) -> Item | None:
            if n not in quotes:
                tick = ticks[n]
                quotes[n] = None
                if tick["bid"] is not None:
                    event = messages.quote(tick, *venues.of(tick["symbol"]))
                    quotes[n] = Item(("Q", tick["symbol"]), orjson.dumps(event), TICK, tick)
            return quotes[n]

        for key, sockets in list(sets.items()):
            t, q, a, am = key
            items = [trade(n) for n in batch.rows(t)] if t else []
            if q:
                items += [i for n in batch.rows(q) if (i := quote(n)) is not None]
            gated = [i for i in a_items if _wants(a, i.ref[1])] if a else []
            if am:
                gated += [i for i in am_items if _wants(am, i.ref[1])]
            if not items and not gated:
                continue
            shared = Rendered(items + gated, FRAMING)
            for socket in list(sockets):
                topics: Topics = socket.state
                if gated and not all(topics.admits(i) for i in gated):
                    mine = items + [i for i in gated if topics.admits(i)]
                    if mine:
                        socket.offer(Rendered(mine, FRAMING))
                else:
                    socket.offer(shared)


def _aggregate(prefix: str, event: dict, need: int) -> Item:
    key = (prefix, event["sym"])
    return Item(key, orjson.dumps(event), TICK, key, need)


GATEWAY = GatewayFeed()
