"""The live sources' Prometheus metrics (docs/operations.md#metrics), kept where the sources
live. A connector reports its state once a second (`report`), as it does for `/health`:
the gauges are set and its counts folded into the counters then, never per message."""

from __future__ import annotations

from typing import Any

from apps.ops.metrics import Counter, Gauge

RUNNING = Gauge(
    "marketflux_source_running",
    "Whether each live source's connector runs (1: enabled in this deployment) or has "
    "stopped (0: disabled, or the sources process is shutting down).",
    ["source"],
    multiprocess_mode="livemax",
)
CONNECTED = Gauge(
    "marketflux_source_connected",
    "Whether each live source is connected to its vendor's stream (1) or not (0).",
    ["source"],
    multiprocess_mode="livemax",
)
LAST_MESSAGE = Gauge(
    "marketflux_source_last_message_timestamp_seconds",
    "When each live source last received a message (Unix time).",
    ["source"],
    multiprocess_mode="livemax",
)
SINCE_LAST_MESSAGE = Gauge(
    "marketflux_source_seconds_since_last_message",
    "Seconds since each live source last received a message, as of its last report "
    "(once a second).",
    ["source"],
    multiprocess_mode="livemin",
)
MESSAGES = Counter(
    "marketflux_source_messages_total", "Messages received from each vendor.", ["source"]
)
MALFORMED = Counter(
    "marketflux_source_malformed_messages_total",
    "Messages from each vendor that could not be read (counted, then skipped).",
    ["source"],
)
RECONNECTS = Counter(
    "marketflux_source_reconnects_total", "Reconnections of each live source.", ["source"]
)
GAPS_FILLED = Counter(
    "marketflux_source_gaps_filled_total",
    "Gaps (a reconnection, a short minute) filled from each vendor's history.",
    ["source"],
)
GAP_TRADES = Counter(
    "marketflux_source_gap_trades_total",
    "Trades recovered from each vendor's history by gap fills.",
    ["source"],
)

_folded: dict[str, dict[str, int]] = {}  # per source: the counts already in the counters


def report(name: str, state: Any, now: float, *, running: bool = True) -> None:
    """A connector's state (`SourceState`) into the gauges; its new counts into counters.
    `running=False`: its last report, as it stops."""
    RUNNING.labels(name).set(1 if running else 0)
    CONNECTED.labels(name).set(1 if state.connected and running else 0)
    if state.last_message_at is not None:
        LAST_MESSAGE.labels(name).set(state.last_message_at)
        SINCE_LAST_MESSAGE.labels(name).set(max(0.0, now - state.last_message_at))
    counts = {
        "messages": state.messages,
        "malformed": sum(state.malformed.values()),
        "reconnects": state.reconnects,
    }
    if name not in _folded:  # every series of the source there from its first report, at 0
        for counter in (MESSAGES, MALFORMED, RECONNECTS, GAPS_FILLED, GAP_TRADES):
            counter.labels(name)
    folded = _folded.setdefault(name, dict.fromkeys(counts, 0))
    for key, counter in (("messages", MESSAGES), ("malformed", MALFORMED),
                         ("reconnects", RECONNECTS)):  # fmt: skip
        if counts[key] > folded[key]:
            counter.labels(name).inc(counts[key] - folded[key])
        folded[key] = counts[key]


def gap_filled(name: str, trades: int) -> None:
    GAPS_FILLED.labels(name).inc()
    GAP_TRADES.labels(name).inc(trades)
