"""What waits to go out on one WebSocket, bounded however slowly the client reads.

Daphne writes whatever a consumer sends straight into Twisted's transport buffer, which
grows without limit when the client does not read. So a socket's sender waits on a
`WriteGate` (Twisted calls it when the buffer passes 64 KiB and again when it drains), and
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
class WriteGate:
    """Open while the socket's write buffer has room; a Twisted push producer."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    @classmethod
    def attach(cls, send) -> WriteGate:
        """A gate on the Daphne connection behind a consumer's `send` (always open elsewhere).

        Daphne hands the application `partial(server.handle_reply, protocol)`, which
        middleware may wrap; the protocol (autobahn's) passes producers on to the TCP
        transport. The upgraded HTTP channel is
        still registered there as producer, and a transport has one, so it is replaced.
        """
        gate = cls()
        protocol = _daphne_protocol(send)
        if hasattr(protocol, "registerProducer") and getattr(protocol, "transport", None):
            try:
                protocol.unregisterProducer()
                protocol.registerProducer(gate, True)
            except Exception:  # a transport that refuses: the gate stays open
                logger.warning("no write flow control on this connection", exc_info=True)
        return gate

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
