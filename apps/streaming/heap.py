"""Keeping the garbage collector's full passes off the event loop while sockets are open.

An open WebSocket is about 130 objects the collector tracks (Twisted's transport, autobahn's
protocol, Daphne's and Channels' state, the consumer, our `Socket`). CPython 3.11 collects
its oldest generation when what survived younger collections grows past a quarter of it, and
a full pass walks every tracked object: with 5,000 sockets open, about 640,000 of them, it
held the event loop for hundreds of milliseconds (`bench/ws_fanout.py`: the first client to
get a tick waited 470 ms at p99 where the `websockets` anchor's waited 31 ms), and every
batch in that time waited.

So, as `marketflux_site/asgi.py` does with start-up's objects, sockets that have settled are
moved out of the collector's view (`gc.freeze`): a full pass then walks only what came since.
A frozen socket that closes is freed by reference counting where it can be; what it leaves
in reference cycles stays until enough frozen sockets have closed (`CHURN`) that one planned
full pass is worth it, which then unfreezes, collects and freezes again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

logger = logging.getLogger(__name__)

SETTLE = 5.0  # s after the last socket opened before freezing (a burst of connects is one)
CHURN = 0.5  # collect once closed frozen sockets reach this share of those frozen
MIN_CHURN = 500  # ... and at least this many: below it what they leave is small


class Freezer:
    """Counts sockets opening and closing on one event loop, and freezes and collects."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.open = 0  # sockets open now
        self.frozen = 0  # sockets open when the heap was last frozen
        self.closed_frozen = 0  # of those, closed since
        self._pending: asyncio.TimerHandle | None = None
        self._since_freeze = 0  # sockets opened since the last freeze

    def opened(self) -> None:
        self.open += 1
        self._since_freeze += 1
        if self._pending is not None:
            self._pending.cancel()
        self._pending = self.loop.call_later(SETTLE, self.freeze)

    def closed(self) -> None:
        self.open -= 1
        if self._since_freeze:
            self._since_freeze -= 1  # (which socket closed is not known; close enough)
            return
        self.closed_frozen += 1
        if self.closed_frozen >= max(MIN_CHURN, CHURN * self.frozen):
            self.collect()

    def freeze(self) -> None:
        """Young garbage collected first (cheap), then everything left frozen."""
        self._pending = None
        gc.collect(1)
        gc.freeze()
        self.frozen, self.closed_frozen, self._since_freeze = self.open, 0, 0

    def collect(self) -> None:
        """The planned full pass: what closed sockets left in cycles is freed."""
        began, closed = time.perf_counter(), self.closed_frozen
        gc.unfreeze()
        found = gc.collect()
        self.freeze()
        logger.info(
            "full collection after %d frozen sockets closed: %d objects freed in %.0f ms",
            closed, found, (time.perf_counter() - began) * 1000,
        )  # fmt: skip
