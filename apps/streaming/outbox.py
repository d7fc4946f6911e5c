"""What waits to go out on one WebSocket, bounded however slowly the client reads.

(And what comes in: `SocketFlow` also lets a consumer see and stop a client that sends
faster than it is answered.)

Daphne writes whatever it is given straight into Twisted's transport buffer, which grows
without limit when the client does not read. So the broadcaster (`broadcast.py`) writes to a
socket only while its `SocketFlow` is open (Twisted closes it when the buffer passes 64 KiB
and opens it again when it has drained); meanwhile what the socket would have got waits in
its `Outbox`, where a newer tick replaces an older one of the same symbol: at most one
pending tick per symbol, the rest counted as dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Hashable, Iterable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from apps.streaming.metrics import tally

logger = logging.getLogger(__name__)

KEEP = 0  # an answer, an alert, a snapshot: never dropped
LATEST = 1  # only the newest of its key matters (the overview)
TICK = 2  # while the client is behind, only the newest of its key (its symbol) is kept


class Item:
    """One message as it goes out: encoded once (`data`, JSON), shared by every socket that
    gets it. `key` is what it coalesces by; `ref` what a filter may look at (the tick
    message); `need` a feed's condition on who may have it (the gateway's aggregates)."""

    __slots__ = ("data", "key", "mode", "need", "ref")

    def __init__(self, key: Hashable, data: bytes, mode: int = TICK, ref: object = None,
                 need: int | None = None) -> None:  # fmt: skip
        self.key = key
        self.data = data
        self.mode = mode
        self.ref = ref
        self.need = need

    def __repr__(self) -> str:
        return f"Item({self.key!r}, {self.data[:40]!r}, {self.mode})"


@implementer(IPushProducer)
class SocketFlow:
    """Open while the socket's write buffer has room; a Twisted push producer."""

    def __init__(self) -> None:
        self._open = True
        self._protocol = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_resume: Callable[[], None] | None = None  # called (soon) when it opens again

    @classmethod
    def attach(cls, send) -> SocketFlow:
        """A gate on the Daphne connection behind a consumer's `send` (always open elsewhere).

        Daphne hands the application `partial(server.handle_reply, protocol)`, which
        middleware may wrap; the protocol (autobahn's) passes producers on to the TCP
        transport. The upgraded HTTP channel is still registered there as producer, and a
        transport has one, so it is replaced.
        """
        gate = cls()
        protocol = daphne_protocol(send)
        if hasattr(protocol, "registerProducer") and getattr(protocol, "transport", None):
            try:
                protocol.unregisterProducer()
                protocol.registerProducer(gate, True)
                gate._protocol = protocol
                gate._loop = asyncio.get_running_loop()
            except Exception:  # a transport that refuses: the gate stays open
                logger.warning("no write flow control on this connection", exc_info=True)
        return gate

    def reading(self, on: bool) -> None:
        """Stop or resume reading from the client (while the consumer cannot answer yet)."""
        if self._protocol is not None:
            transport = self._protocol.transport
            transport.resumeProducing() if on else transport.pauseProducing()

    def backlog(self) -> int:
        """Messages Daphne has read from the client that the consumer has not handled yet."""
        queue = getattr(self._protocol, "application_queue", None)
        return queue.qsize() if queue is not None else 0

    def drop(self) -> None:
        """Stop reading from the client, forget what it sent, close after the close frame.

        For a client closed for flooding: Daphne reads and queues every frame a client
        sends, and would go on until the close handshake, which a client that does not
        read never finishes. `muted` is Daphne's own switch for ignoring incoming frames.
        """
        protocol = self._protocol
        if protocol is None:
            return
        protocol.muted = True
        self.reading(False)
        queue = getattr(protocol, "application_queue", None)
        while queue is not None and not queue.empty():
            queue.get_nowait()
        protocol.dropConnection(abort=False)  # the close frame still goes out first

    @property
    def attached(self) -> bool:
        """Whether it follows a Daphne connection's write buffer."""
        return self._protocol is not None

    @property
    def is_open(self) -> bool:
        return self._open

    # IPushProducer, called by Twisted on the event loop thread.
    def pauseProducing(self) -> None:
        tally.pauses += self._open  # a pause, not a repeat of one
        self._open = False

    def resumeProducing(self) -> None:
        self._open = True
        if self.on_resume is not None:
            # Not from inside Twisted's write callback: on the loop's next turn.
            (self._loop or asyncio.get_running_loop()).call_soon(self._resumed)

    def stopProducing(self) -> None:
        self._open = True  # the connection is gone: nothing waits on it any more

    def _resumed(self) -> None:
        if self._open and self.on_resume is not None:
            self.on_resume()


def daphne_protocol(send):
    """The protocol in Daphne's send callable, through Channels' session wrapper."""
    for _ in range(10):
        if isinstance(send, functools.partial):
            return send.args[0] if send.args else None
        # SessionMiddleware passes a bound method of its wrapper, which keeps the original.
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None


class Outbox:
    """Items waiting for one socket: the others in order, the newest of each `LATEST` key,
    then ticks by key."""

    __slots__ = ("dropped", "latest", "others", "ticks")

    def __init__(self) -> None:
        self.others: list[Item] = []
        self.latest: dict[Hashable, Item] = {}
        self.ticks: dict[Hashable, list[Item]] = {}
        self.dropped = 0

    def add(self, items: Iterable[Item], *, coalesce: bool) -> None:
        """Queue items; with `coalesce` (the client is behind) keep only the newest tick of
        each key."""
        for item in items:
            mode = item.mode
            if mode == TICK:
                pending = self.ticks.get(item.key)
                if pending is None:
                    self.ticks[item.key] = [item]
                    continue
                if coalesce:
                    self.dropped += len(pending)
                    tally.coalesced += len(pending)
                    pending.clear()
                pending.append(item)
            elif mode == LATEST:
                self.latest[item.key] = item
            else:
                self.others.append(item)

    def take(self) -> list[Item]:
        out = self.others + list(self.latest.values())
        for pending in self.ticks.values():
            out += pending
        self.others, self.latest, self.ticks = [], {}, {}
        return out

    def __bool__(self) -> bool:
        return bool(self.others or self.latest or self.ticks)
