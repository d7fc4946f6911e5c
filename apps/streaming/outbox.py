"""What waits to go out on one WebSocket, bounded however slowly the client reads.

(And what comes in: `SocketFlow` also lets a consumer see and stop a client that sends
faster than it is answered.)

Daphne writes whatever a consumer sends straight into Twisted's transport buffer, which
grows without limit when the client does not read. So a socket's sender waits on a
`SocketFlow` (Twisted calls it when the buffer passes 64 KiB and again when it drains), and
while it waits, new ticks replace older ones of the same symbol in the `Outbox`: at most
one pending tick per symbol, the rest counted as dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

logger = logging.getLogger(__name__)


@implementer(IPushProducer)
class SocketFlow:
    """Open while the socket's write buffer has room; a Twisted push producer."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._protocol = None

    @classmethod
    def attach(cls, send) -> SocketFlow:
        """A gate on the Daphne connection behind a consumer's `send` (always open elsewhere).

        Daphne hands the application `partial(server.handle_reply, protocol)`, which
        middleware may wrap; the protocol (autobahn's) passes producers on to the TCP
        transport. The upgraded HTTP channel is still registered there as producer, and a
        transport has one, so it is replaced.
        """
        gate = cls()
        protocol = _daphne_protocol(send)
        if hasattr(protocol, "registerProducer") and getattr(protocol, "transport", None):
            try:
                protocol.unregisterProducer()
                protocol.registerProducer(gate, True)
                gate._protocol = protocol
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
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        await self._open.wait()

    # IPushProducer, called by Twisted on the event loop thread.
    def pauseProducing(self) -> None:
        self._open.clear()

    def resumeProducing(self) -> None:
        self._open.set()

    def stopProducing(self) -> None:
        self._open.set()


def _daphne_protocol(send):
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
    """Messages waiting for one socket: ticks by symbol, then everything else."""

    def __init__(self) -> None:
        self.ticks: dict[str, list[dict]] = {}
        self.others: list[dict] = []
        self.latest: dict[str, dict] = {}  # messages where only the newest matters, by type
        self.dropped = 0
        self.ready = asyncio.Event()

    def add_ticks(self, messages: list[dict], *, coalesce: bool) -> None:
        """Queue ticks; with `coalesce` (the client is behind) keep only the newest each."""
        for message in messages:
            pending = self.ticks.setdefault(message["symbol"], [])
            if coalesce and pending:
                self.dropped += len(pending)
                pending.clear()
            pending.append(message)
        if messages:
            self.ready.set()

    def add(self, message: dict) -> None:
        self.others.append(message)
        self.ready.set()

    def replace(self, message: dict) -> None:
        """Queue a message that supersedes any pending one of its type (the overview)."""
        self.latest[message["type"]] = message
        self.ready.set()

    def take(self) -> list[dict]:
        out = self.others + list(self.latest.values())
        for pending in self.ticks.values():
            out += pending
        self.others, self.latest, self.ticks = [], {}, {}
        self.ready.clear()
        return out
