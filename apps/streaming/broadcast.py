"""The WebSocket fan-out: one broadcaster per ASGI process builds each frame once and writes
the same bytes to every socket that wants it (docs/architecture.md#fan-out).

Channels still routes each connection to its consumer, authenticates it and owns it: the
consumer accepts, answers what the client sends, applies the flood limits and closes. What
the pipeline publishes no longer goes through the consumers. Channels gives every socket a
channel of its own, a dispatch per group message and, in our consumers, a JSON encode and
a frame per socket and message: the same work a thousand times over on one event loop, about
0.15 ms per socket per batch (1,000 sockets: p50 159 ms, p99 424 ms; docs/benchmarks.md).

Here, per process:

- the broadcaster joins each channel group once, on one channel of its own, while a local
  socket needs it (`market`, `ticks.<SYMBOL>`, `alerts.user.<id>`), and so receives and
  decodes each group message once;
- sockets are grouped by feed and subscription set; a message becomes `Item`s (each message
  encoded once with orjson, shared by every set that takes it) and each set's frames are
  built once (`Rendered`);
- each socket gets the same frame bytes. On Daphne they go straight to the connection's
  socket as a complete WebSocket frame, header included (`DaphneSink`): the header of an
  unmasked server frame is the same for every socket, so nothing is done per socket but the
  write itself. Going through the ASGI send instead costs Daphne's and autobahn's
  per-message work (UTF-8 encode, frame assembly, a debug-log call) and Twisted's deferred
  write; `DaphneSink` has the measurements;
- a socket whose write buffer is full (Twisted's 64 KiB, `SocketFlow`) gets nothing written:
  what it would have got waits in its `Outbox`, the newest tick per symbol, and goes out as
  one frame when the buffer has drained. A client that keeps up never waits there.
- a conflated subscription (`/ws/market`'s `"every"`, key `Every`) is a set of its own: what
  the feed gives it waits in the set's `Held`, the newest tick per symbol, and goes out to
  every socket of the set as one shared frame once a period, from one flush loop per period.

Off Daphne (Channels' test communicator, another ASGI server) frames go through the ASGI
send in order (`AsgiSink`), as they did before the broadcaster.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import orjson
from channels.layers import get_channel_layer
from twisted.internet import tcp

from apps.streaming import metrics
from apps.streaming.groups import MARKET_GROUP, alerts_group, ticks_group
from apps.streaming.heap import Freezer
from apps.streaming.outbox import KEEP, LATEST, TICK, Item, Outbox, SocketFlow, daphne_protocol
from apps.streaming.publisher import (
    ALERTS_EVENT,
    MARKET_BATCH_EVENT,
    MARKET_OVERVIEW_EVENT,
    STOCK_TICKS_EVENT,
)

logger = logging.getLogger(__name__)

ALL = "*"  # a /ws/market subscription to every symbol
NOTHING: frozenset[str] = frozenset()


# --- Frames -----------------------------------------------------------------------------------


def _header(length: int) -> bytes:
    """The head of an unmasked, final text frame (RFC 6455 5.2): the same for every socket."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class Frame:
    """One WebSocket text frame: its payload, and its bytes on the wire built on first use."""

    __slots__ = ("_wire", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = _header(len(self.payload)) + self.payload
        return self._wire


@dataclass(frozen=True)
class Framing:
    """How a feed's messages become frames: a JSON array of them (at most `limit` a frame),
    or each message a frame of its own."""

    array: bool = True
    limit: int | None = None

    def frames(self, items: Sequence[Item]) -> list[tuple[Frame, int]]:
        """Each frame with the index of its first item."""
        if not self.array:
            return [(Frame(item.data), n) for n, item in enumerate(items)]
        step = self.limit or max(len(items), 1)
        return [
            (Frame(b"[" + b",".join([i.data for i in items[k : k + step]]) + b"]"), k)
            for k in range(0, len(items), step)
        ]


ARRAY = Framing()
EACH = Framing(array=False)


class Rendered:
    """What one message is for one subscription set: its items, its frames built once."""

    __slots__ = ("_frames", "framing", "items")

    def __init__(self, items: list[Item], framing: Framing) -> None:
        self.items = items
        self.framing = framing
        self._frames: list[tuple[Frame, int]] | None = None

    def frames(self) -> list[tuple[Frame, int]]:
        if self._frames is None:
            self._frames = self.framing.frames(self.items)
        return self._frames


def own(message: dict) -> Item:
    """A message for one socket (an answer, a snapshot), never dropped."""
    return Item(None, orjson.dumps(message), KEEP)


# --- Where a socket's frames go ------------------------------------------------------------------


class DaphneSink:
    """Frames written straight to a Daphne connection: the same bytes for every socket.

    Daphne's WebSocket protocol is autobahn's; a server frame is its header and the payload
    (never masked), so the bytes are the same for every socket and autobahn need not build
    them again. While Twisted holds nothing for the connection, the frame goes to the
    socket at once (`send`), and only what the kernel does not take is handed to Twisted's
    transport, which buffers it, writes it when it can and pauses the `SocketFlow` past
    64 KiB. Measured in Daphne at 1,000 clients (CPU per socket per frame, and Daphne's CPU;
    docs/benchmarks.md#ws_fanout): the ASGI `send` 55-60 µs (21-26 %), autobahn's
    `sendMessage` 35-38 µs (19-22 %), Twisted's `transport.write` of the shared frame 21-25
    µs (15-19 %), both before Twisted's own write of each; straight to the socket 15-16 µs,
    the write included (6.3-6.5 %): Twisted registers the socket with the event loop and
    unregisters it for every frame it writes itself.

    The connection's state is checked before each write (nothing after the close frame); a
    connection that negotiated compression (Daphne enables none) or holds frames autobahn
    queued itself gets its frame through autobahn instead; a transport that is not plain
    TCP (TLS) gets it through `transport.write`.
    """

    def __init__(self, protocol, gate: SocketFlow) -> None:
        self.protocol = protocol
        self.gate = gate
        self.direct = isinstance(protocol.transport, tcp.Connection)

    @property
    def is_open(self) -> bool:
        return self.gate.is_open

    def write(self, frame: Frame) -> None:
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return
        if protocol._perMessageCompress is not None or protocol.send_queue:
            protocol.sendMessage(frame.payload)
            return
        transport = protocol.transport
        data = frame.wire
        if self.direct and _holds_nothing(transport):
            try:
                sent = transport.socket.send(data)
            except OSError:  # full, or broken: Twisted's own write finds out which
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def on_resume(self, callback: Callable[[], None]) -> None:
        self.gate.on_resume = callback

    async def flush(self) -> None:
        """Everything written is in the kernel's or Twisted's hands already."""

    def close(self) -> None:
        self.gate.on_resume = None


def _holds_nothing(transport: tcp.Connection) -> bool:
    """Whether Twisted has no bytes waiting for this open connection (so a direct write
    keeps the order of everything written to it)."""
    return (
        transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    )


class AsgiSink:
    """Frames sent through the ASGI `send`, in order, one at a time (off Daphne).

    There is no write buffer to watch, so it always counts as open: nothing is coalesced.
    """

    is_open = True

    def __init__(self, send) -> None:
        self.send = send
        self.queue: deque[Frame] = deque()
        self.task: asyncio.Task | None = None

    def write(self, frame: Frame) -> None:
        self.queue.append(frame)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self.queue:
                frame = self.queue.popleft()
                await self.send({"type": "websocket.send", "text": frame.payload.decode()})
        finally:
            self.task = None

    def on_resume(self, callback: Callable[[], None]) -> None:
        pass

    async def flush(self) -> None:
        """Until every frame written so far has been sent."""
        while self.task is not None:
            await asyncio.wait([self.task])

    def close(self) -> None:
        self.queue.clear()
        if self.task is not None:
            self.task.cancel()


# --- One socket ---------------------------------------------------------------------------------


class Socket:
    """A WebSocket as the broadcaster sees it: where its frames go, what waits for it.

    It starts held: what arrives before `start` waits in the outbox, behind the first
    messages the consumer gives `start` (a snapshot, an overview).
    """

    def __init__(self, sink: DaphneSink | AsgiSink, framing: Framing) -> None:
        self.sink = sink
        self.framing = framing
        self.outbox = Outbox()
        self.held = True
        self.closed = False
        # A filter of what this socket takes from shared items (`keep(socket, items)`).
        self.keep: Callable[[Socket, list[Item]], list[Item]] | None = None
        self.memberships: dict[Feed, Hashable] = {}
        self.state: object = None  # a feed's own per-socket state (the gateway's topics)
        sink.on_resume(self._drain)

    @classmethod
    def attach(cls, send, gate: SocketFlow, framing: Framing) -> Socket:
        """The socket of a consumer's connection: written to directly on Daphne."""
        protocol = daphne_protocol(send)
        if gate.attached and hasattr(protocol, "transport"):
            return cls(DaphneSink(protocol, gate), framing)
        return cls(AsgiSink(send), framing)

    def offer(self, rendered: Rendered) -> None:
        """A message for this socket: its shared frames now, or its items into the outbox."""
        if self.closed:
            return
        if self.keep is not None:
            items = self.keep(self, rendered.items)
            if items is not rendered.items:
                if not items:
                    return
                rendered = Rendered(items, self.framing)
        if self.held or self.outbox or not self.sink.is_open:
            self.outbox.add(rendered.items, coalesce=not self.sink.is_open)
        else:
            self._write(rendered.items, rendered.frames())

    def send(self, messages: list[dict]) -> None:
        """Messages for this socket alone (answers): never dropped, never filtered."""
        if messages and not self.closed:
            items = [own(m) for m in messages]
            if self.held or self.outbox or not self.sink.is_open:
                self.outbox.add(items, coalesce=False)
            else:
                self._write(items, self.framing.frames(items))

    def start(
        self,
        first: Iterable[dict] = (),
        *,
        latest: dict | None = None,
        keep: Callable[[Socket, list[Item]], list[Item]] | None = None,
    ) -> None:
        """Begin writing: `first`, then `latest` (unless a newer one of its type came in the
        meantime), then what arrived while held (through `keep`, if given)."""
        held = self.outbox.take()
        self.outbox.add([own(m) for m in first], coalesce=False)
        if latest is not None and not any(
            i.mode == LATEST and i.key == latest["type"] for i in held
        ):
            self.outbox.add([Item(latest["type"], orjson.dumps(latest), LATEST)], coalesce=False)
        self.keep = keep
        if keep is not None:
            held = keep(self, held)
        self.outbox.add(held, coalesce=False)
        self.held = False
        self._drain()

    async def flush(self) -> None:
        """Until what was written has gone to the server (a no-op on Daphne)."""
        await self.sink.flush()

    def close(self) -> None:
        """Nothing more goes out (the consumer closes or has closed the connection)."""
        self.closed = True
        self.sink.close()

    def _write(self, items: Sequence[Item], frames: list[tuple[Frame, int]]) -> None:
        sink = self.sink
        for frame, first in frames:
            if not sink.is_open:  # the buffer filled up mid-way: the rest waits, coalesced
                self.outbox.add(items[first:], coalesce=True)
                return
            sink.write(frame)
            metrics.tally.frames += 1

    def _drain(self) -> None:
        while not self.held and not self.closed and self.outbox and self.sink.is_open:
            items = self.outbox.take()
            self._write(items, self.framing.frames(items))


# --- What the pipeline publishes, once per process ----------------------------------------------


class Batch:
    """A `market.batch` as received: its ticks, and what is derived from them once."""

    def __init__(self, ticks: list[dict], seq: int) -> None:
        self.ticks = ticks
        self.seq = seq  # its number (`next_batch`)
        self._items: list[Item] | None = None
        self._rows: dict[str, list[int]] | None = None

    @property
    def items(self) -> list[Item]:
        """Each tick message encoded once, in the batch's order."""
        if self._items is None:
            self._items = [Item(t["symbol"], orjson.dumps(t), TICK, t) for t in self.ticks]
        return self._items

    def rows(self, symbols: frozenset[str] | set[str]) -> list[int]:
        """Indexes of the ticks of `symbols` ("*": all), in the batch's order."""
        if ALL in symbols:
            return list(range(len(self.ticks)))
        if self._rows is None:
            self._rows = {}
            for n, tick in enumerate(self.ticks):
                self._rows.setdefault(tick["symbol"], []).append(n)
        by_symbol = self._rows
        if len(symbols) > len(by_symbol):
            found = [n for s, rows in by_symbol.items() if s in symbols for n in rows]
        else:
            found = [n for s in symbols for n in by_symbol.get(s, ())]
        found.sort()
        return found


class Feed:
    """A kind of socket: the group a subscription key needs, and how the group's messages
    become items for each subscription set (one `Rendered` per set, shared by its sockets)."""

    events: frozenset[str] = frozenset()
    framing: Framing = ARRAY
    awaits = False  # delivers after the feeds that never wait (it reads the database)

    def group(self, key: Hashable) -> str:
        raise NotImplementedError

    async def deliver(self, message: dict, sets: dict, batch: Batch | None) -> None:
        raise NotImplementedError

    def idle(self) -> None:
        """The feed's last local socket has left: forget what was kept for its sockets."""


def offer_all(sockets: dict[Socket, None], rendered: Rendered) -> None:
    for socket in list(sockets):
        socket.offer(rendered)


class MarketFeed(Feed):
    """`/ws/market`: keys are `ALL`, or the frozen set of subscribed symbols. A conflated
    set, `Every(key, period)`, reaches `deliver` under its `key`, its `Held` in place of its
    sockets."""

    events = frozenset({MARKET_BATCH_EVENT, MARKET_OVERVIEW_EVENT})

    def group(self, key: Hashable) -> str:
        return MARKET_GROUP

    async def deliver(self, message: dict, sets: dict, batch: Batch | None) -> None:
        if message["type"] == MARKET_OVERVIEW_EVENT:
            overview = message["overview"]
            rendered = Rendered([Item(overview["type"], orjson.dumps(overview), LATEST)], ARRAY)
            for sockets in list(sets.values()):
                offer_all(sockets, rendered)
            return
        for key, sockets in list(sets.items()):
            if not key:
                continue
            if key == ALL:
                items = batch.items
            else:
                every = batch.items
                items = [every[n] for n in batch.rows(key)]
            if items:
                offer_all(sockets, Rendered(items, ARRAY))


class AlertsFeed(Feed):
    """A signed-in user's `/ws/market` sockets: keys are user ids."""

    events = frozenset({ALERTS_EVENT})

    def group(self, key: Hashable) -> str:
        return alerts_group(key)

    async def deliver(self, message: dict, sets: dict, batch: Batch | None) -> None:
        sockets = sets.get(message["user"])
        if sockets:  # never coalesced: each one is news
            offer_all(sockets, Rendered([own(a) for a in message["alerts"]], ARRAY))


class StockFeed(Feed):
    """`/ws/stocks/{symbol}`: keys are tickers; one frame per tick."""

    events = frozenset({STOCK_TICKS_EVENT})
    framing = EACH

    def group(self, key: Hashable) -> str:
        return ticks_group(key)

    async def deliver(self, message: dict, sets: dict, batch: Batch | None) -> None:
        ticks = message["messages"]
        sockets = sets.get(ticks[0]["symbol"]) if ticks else None
        if sockets:
            items = [Item(t["symbol"], orjson.dumps(t), TICK, t) for t in ticks]
            offer_all(sockets, Rendered(items, EACH))


MARKET = MarketFeed()
ALERTS = AlertsFeed()
STOCKS = StockFeed()


class SkipSeen:
    """A `/ws/stocks` socket's filter while ticks its snapshot holds may still arrive: they
    are skipped until the first tick the snapshot did not have (then it removes itself)."""

    def __init__(self, seen: set[str]) -> None:
        self.seen = seen

    def __call__(self, socket: Socket, items: list[Item]) -> list[Item]:
        kept = [i for i in items if i.mode != TICK or i.ref["ts"] not in self.seen]
        if any(i.mode == TICK for i in kept):
            socket.keep = None
        return kept if len(kept) != len(items) else items


# --- Conflated subscriptions ------------------------------------------------------------------

MIN_PERIOD = 0.25  # seconds: the shortest and longest conflation periods a socket may ask for
MAX_PERIOD = 60.0
PERIOD_STEP = 0.25  # periods are rounded to this, so sockets share sets and flush loops


def conflation_period(value: object) -> float:
    """A subscription's `"every"` as the broadcaster takes it: seconds between flushes,
    rounded to `PERIOD_STEP`, or 0 for every tick; ValueError for anything else (a bool,
    a string, a number out of range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    if value == 0:
        return 0.0
    if not MIN_PERIOD <= value <= MAX_PERIOD:  # NaN fails it too
        raise ValueError(f"out of range: {value!r}")
    return round(value / PERIOD_STEP) * PERIOD_STEP


@dataclass(frozen=True, slots=True)
class Every:
    """A conflated subscription key: the feed's own `key`, flushed every `period` seconds.
    Sockets with the same key and period share a `Held` and its frames."""

    key: Hashable
    period: float


def plain(key: Hashable) -> Hashable:
    """The feed's own key of a subscription key (conflated or not)."""
    return key.key if isinstance(key, Every) else key


class Held:
    """What waits for the sockets of one conflated set until the next flush: the newest item
    of each key (a symbol's tick, the overview), in the order the newest ones came in, and
    items that are never coalesced (`KEEP`) in order. The feed offers it what it would
    offer a socket of the set."""

    __slots__ = ("keep", "newest")

    def __init__(self) -> None:
        self.newest: dict[tuple[int, Hashable], Item] = {}
        self.keep: list[Item] = []

    def offer(self, rendered: Rendered) -> None:
        newest = self.newest
        for item in rendered.items:
            if item.mode == KEEP:
                self.keep.append(item)
            else:
                key = (item.mode, item.key)
                newest.pop(key, None)  # to the end: the order of the newest ones
                newest[key] = item

    def items(self) -> list[Item]:
        return [*self.keep, *self.newest.values()]

    def take(self) -> list[Item]:
        items = self.items()
        self.newest, self.keep = {}, []
        return items

    def __bool__(self) -> bool:
        return bool(self.newest or self.keep)


# --- The broadcaster ---------------------------------------------------------------------------


class Broadcaster:
    """The process's fan-out, on the ASGI event loop: one channel, each needed group joined
    once, each group message delivered to every local socket that wants it.

    A conflated set (an `Every` key) is fed like any other, under the feed's own key, but
    what the feed offers it goes to its `Held`; one flush loop per period sends each held
    set of that period to its sockets (`_flush_every`).
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        self.groups: dict[str, int] = {}  # group -> local sockets in it
        self.sets: dict[Feed, dict[Hashable, dict[Socket, None]]] = {}
        self.held: dict[float, dict[tuple[Feed, Every], Held]] = {}  # by period
        self.flushers: dict[float, asyncio.Task] = {}  # a flush loop per period held
        self._views: dict[Feed, dict[Hashable, dict]] = {}  # what `deliver` gives each feed
        self._lock = asyncio.Lock()
        self.freezer = Freezer(self.loop)

    def opened(self, socket: Socket) -> None:
        """A connection of this process opened (`closed`: ended). On Daphne, its objects are
        kept out of the collector's full passes once it has settled (`apps/streaming/heap.py`);
        elsewhere (tests' communicators) the process is not a server's, and nothing changes."""
        if isinstance(socket.sink, DaphneSink):
            self.freezer.opened()

    def closed(self, socket: Socket) -> None:
        if isinstance(socket.sink, DaphneSink):
            self.freezer.closed()

    async def join(self, socket: Socket, feed: Feed, key: Hashable) -> None:
        """Add a socket to a feed under a subscription key; the group is joined (once per
        process) before this returns, so nothing published after it is missed."""
        group = feed.group(plain(key))
        async with self._lock:
            if not self.groups.get(group):
                if self.channel is None:
                    self.channel = await self.layer.new_channel(prefix="broadcast.")
                    self.task = self.loop.create_task(self._receive_forever(self.channel))
                await self.layer.group_add(group, self.channel)
            self.groups[group] = self.groups.get(group, 0) + 1
        self._add(socket, feed, key)

    def move(self, socket: Socket, feed: Feed, key: Hashable) -> None:
        """A socket's new subscription key within a feed (the same group). What was held
        for it under a conflated key goes out first, as the old key's ticks would have."""
        old = socket.memberships[feed]
        if old == key:
            return
        if feed.group(plain(old)) != feed.group(plain(key)):
            raise ValueError(f"{feed!r}: {old!r} and {key!r} are in different groups")
        if isinstance(old, Every):
            held = self.held.get(old.period, {}).get((feed, old))
            if held:
                socket.offer(Rendered(held.items(), feed.framing))
        self._remove(socket, feed, old)
        self._add(socket, feed, key)

    async def leave(self, socket: Socket) -> None:
        """Take a socket out of every feed; groups no local socket needs are left."""
        memberships, socket.memberships = socket.memberships, {}
        async with self._lock:
            for feed, key in memberships.items():
                self._remove(socket, feed, key)
                group = feed.group(plain(key))
                self.groups[group] -= 1
                if not self.groups[group]:
                    del self.groups[group]
                    await self.layer.group_discard(group, self.channel)
            if not self.groups and self.task is not None:
                # Nothing to receive: the channel goes with its receive (channels_redis
                # forgets a channel whose receive is cancelled).
                self.task.cancel()
                self.task, self.channel = None, None

    def _add(self, socket: Socket, feed: Feed, key: Hashable) -> None:
        sets = self.sets.setdefault(feed, {})
        if key not in sets:
            sets[key] = {}
            if isinstance(key, Every):
                self._hold(feed, key)
        sets[key][socket] = None
        socket.memberships[feed] = key
        self._views.pop(feed, None)

    def _remove(self, socket: Socket, feed: Feed, key: Hashable) -> None:
        sets = self.sets.get(feed, {})
        sockets = sets.get(key)
        if sockets is not None:
            sockets.pop(socket, None)
            self._views.pop(feed, None)
            if not sockets:
                del sets[key]
                if isinstance(key, Every):
                    self._unhold(feed, key)
                if not sets:
                    feed.idle()

    def _hold(self, feed: Feed, key: Every) -> None:
        """A new conflated set: its `Held`, and its period's flush loop if none runs yet."""
        self.held.setdefault(key.period, {})[(feed, key)] = Held()
        if key.period not in self.flushers:
            task = self.loop.create_task(self._flush_every(key.period))
            self.flushers[key.period] = task

    def _unhold(self, feed: Feed, key: Every) -> None:
        """A conflated set without sockets: what it held is dropped, and the flush loop
        of its period ends with the last set of the period."""
        held = self.held.get(key.period, {})
        held.pop((feed, key), None)
        if not held:
            self.held.pop(key.period, None)
            task = self.flushers.pop(key.period, None)
            if task is not None:
                task.cancel()

    async def _flush_every(self, period: float) -> None:
        """The flush loop of one period: every `period` seconds (at least: the flush itself
        comes on top), each set of that period that holds something gets it as one message,
        its frames built once and shared by its sockets."""
        while True:
            await asyncio.sleep(period)
            try:
                for (feed, key), held in list(self.held.get(period, {}).items()):
                    sockets = self.sets.get(feed, {}).get(key)
                    if held and sockets:
                        offer_all(sockets, Rendered(held.take(), feed.framing))
            except Exception:  # one bad flush must not end the loop
                logger.exception("could not flush the %s s conflated sets", period)

    def _view(self, feed: Feed) -> dict[Hashable, dict]:
        """A feed's sets as its `deliver` sees them: by the feed's own keys, a conflated
        set's `Held` standing in for its sockets (beside the sockets of a plain set of the
        same key). Without conflated sets, the sets themselves. Rebuilt after a change."""
        view = self._views.get(feed)
        if view is None:
            sets = self.sets.get(feed, {})
            view = sets
            if any(isinstance(key, Every) for key in sets):
                view = {}
                for key, sockets in sets.items():
                    if isinstance(key, Every):
                        receivers = view.setdefault(key.key, {})
                        receivers[self.held[key.period][(feed, key)]] = None
                    else:
                        view.setdefault(key, {}).update(sockets)
            self._views[feed] = view
        return view

    async def _receive_forever(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            try:
                await self.deliver(message)
            except Exception:  # one bad message must not end the fan-out
                logger.exception("could not deliver a %s message", message.get("type"))
            # A turn of the loop before the next message, so that Twisted writes what it was
            # just given: a message already waiting would otherwise go out with no turn in
            # between, and a socket whose buffer the last frame filled would look slow.
            await asyncio.sleep(0)

    async def deliver(self, message: dict) -> None:
        """One group message to every local socket that wants it."""
        global _last_batch
        kind = message["type"]
        batch = None
        if kind == MARKET_BATCH_EVENT:
            _last_batch += 1
            batch = Batch(message["messages"], _last_batch)
        feeds = [f for f, sets in self.sets.items() if sets and kind in f.events]
        for feed in sorted(feeds, key=lambda f: f.awaits):
            if self.sets.get(feed):
                await feed.deliver(message, self._view(feed), batch)
        metrics.delivered(message)


_current: Broadcaster | None = None
_last_batch = 0  # market batches received by this process, numbered across event loops


def next_batch() -> int:
    """The number the next market batch received will have: a subscription made now
    applies from that batch on."""
    return _last_batch + 1


def broadcaster() -> Broadcaster:
    """The broadcaster of the running event loop (Daphne has one; tests have one each)."""
    global _current
    loop = asyncio.get_running_loop()
    if _current is None or _current.loop is not loop:
        _current = Broadcaster()
    return _current
