"""The WebSocket tier's Prometheus metrics (docs/operations.md#metrics).

The fan-out writes one frame to thousands of sockets per batch, so nothing here is a
Prometheus call per write: the hot paths add to plain integers (`tally`), and `delivered`
folds them into the counters once per group message the broadcaster handles (and once per
closed socket), a few times a second.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from apps.ops.metrics import Counter, Gauge, Histogram
from apps.streaming.publisher import MARKET_BATCH_EVENT

CONNECTIONS = Gauge(
    "marketflux_websocket_connections",
    "Open WebSocket connections, by route.",
    ["route"],
    multiprocess_mode="livesum",
)
FRAMES = Counter(
    "marketflux_websocket_frames_sent_total",
    "WebSocket frames written to sockets (a frame shared by N sockets counts N).",
)
COALESCED = Counter(
    "marketflux_websocket_ticks_coalesced_total",
    "Ticks replaced by a newer tick of their symbol while their socket could not keep up.",
)
FLOOD_CLOSES = Counter(
    "marketflux_websocket_flood_closes_total",
    "Sockets closed for flooding (4429): too many messages, or answers left unread.",
    ["route"],
)
PAUSES = Counter(
    "marketflux_websocket_backpressure_pauses_total",
    "Times a socket's write buffer filled up and writing to it paused.",
)
DELIVERY_LAG = Histogram(
    "marketflux_websocket_delivery_lag_seconds",
    "From a market batch's tick slot to its frames handed to this process's sockets.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

ROUTES = ("/ws/market", "/ws/stocks/{symbol}", "/stocks")
for _route in ROUTES:  # there at 0 from the start
    CONNECTIONS.labels(_route)
    FLOOD_CLOSES.labels(_route)

_OPEN = "_metrics_route"  # set on a consumer while it is counted open


class _Tally:
    """Counts of the hot paths since the last `flush`."""

    __slots__ = ("coalesced", "frames", "pauses")

    def __init__(self) -> None:
        self.frames = self.coalesced = self.pauses = 0


tally = _Tally()


def route_of(path: str) -> str:
    """The route of a WebSocket path (never the symbol in it)."""
    path = "/" + path.strip("/")
    if path.startswith("/ws/stocks/"):
        return "/ws/stocks/{symbol}"
    return path if path in ROUTES else "other"


def opened(consumer: Any) -> None:
    """A consumer's connection is open (counted once, until `closed`)."""
    if getattr(consumer, _OPEN, None) is None:
        route = route_of(consumer.scope.get("path", ""))
        setattr(consumer, _OPEN, route)
        CONNECTIONS.labels(route).inc()


def closed(consumer: Any) -> None:
    """A consumer's connection has closed."""
    route = getattr(consumer, _OPEN, None)
    if route is not None:
        setattr(consumer, _OPEN, None)
        CONNECTIONS.labels(route).dec()
    flush()


def flooded(consumer: Any) -> None:
    FLOOD_CLOSES.labels(route_of(consumer.scope.get("path", ""))).inc()


def flush() -> None:
    """Fold the tallies into the counters."""
    if tally.frames:
        FRAMES.inc(tally.frames)
        tally.frames = 0
    if tally.coalesced:
        COALESCED.inc(tally.coalesced)
        tally.coalesced = 0
    if tally.pauses:
        PAUSES.inc(tally.pauses)
        tally.pauses = 0


def delivered(message: dict) -> None:
    """The broadcaster handed a group message to its sockets: a market batch's lag, and
    the tallies."""
    if message.get("type") == MARKET_BATCH_EVENT and message.get("messages"):
        ts = message["messages"][-1].get("ts")
        if isinstance(ts, str):
            slot = datetime.fromisoformat(ts).timestamp()
            DELIVERY_LAG.observe(max(0.0, time.time() - slot))
    flush()
