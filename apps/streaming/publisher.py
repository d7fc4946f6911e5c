"""Fan-out of pipeline batches to channel groups (DESIGN.md §3 step 7)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import defaultdict

from channels.layers import get_channel_layer

from apps.market import keys, selectors
from apps.ops.redis_client import redis_client
from apps.streaming import messages as shapes
from apps.streaming.groups import MARKET_GROUP, alerts_group, ticks_group

MARKET_BATCH_EVENT = "market.batch"  # handler name on consumers: market_batch
STOCK_TICKS_EVENT = "stock.ticks"  # handler name on consumers: stock_ticks
MARKET_OVERVIEW_EVENT = "market.overview"  # handler name on consumers: market_overview
ALERTS_EVENT = "alerts.fired"  # handler name on consumers: alerts_fired
OVERVIEW_EVERY_MS = 1000


def publish_overview_if_due(known: dict[str, dict]) -> bool:
    """The market overview to the market group, if no worker has sent one this second.

    Called after a batch (`pipeline.ingest`) with the hot states it wrote (`known`, by
    symbol); the other active symbols' come from Redis. One build a second, however many
    shards run, and after the batch's ticks are out, so it adds nothing to their latency.
    """
    if not redis_client().set(keys.OVERVIEW_DUE, b"1", nx=True, px=OVERVIEW_EVERY_MS):
        return False
    body = shapes.overview_message(selectors.market_overview(known=known))
    overview = _prepared({"type": MARKET_OVERVIEW_EVENT, "overview": body})
    _loop.run(_send([], set(), overview, [], None))
    return True


def watch_symbol(symbol: str, delta: int) -> None:
    """Count sockets watching a symbol, so ticks are sent only to groups someone is in."""
    client = redis_client()
    remaining = client.hincrby(keys.WATCHED_SYMBOLS, symbol, delta)
    if remaining <= 0:
        client.hdel(keys.WATCHED_SYMBOLS, symbol)


def market_batch(messages: list[dict]) -> dict:
    """The market group's message for a batch's tick messages, serialized already when the
    layer can (see `FanOutChannelLayer.prepare`): callable from any thread."""
    return _prepared({"type": MARKET_BATCH_EVENT, "messages": messages})


def _prepared(message: dict) -> dict:
    prepare = getattr(get_channel_layer(), "prepare", None)
    return prepare(message) if prepare else message


def publish_batch(
    messages: list[dict],
    *,
    watched: set[str],
    alerts: list[dict] = (),
    market_message: dict | None = None,
) -> None:
    """One send of the whole batch to the market group, one per watched symbol's group.

    One message per batch (not per tick) keeps the cost per batch flat in the number of
    /ws/market clients; per-symbol groups get only the symbols someone watches, so a batch
    of 5,000 symbols does not cost 5,000 sends. `alerts` (fired events as
    `messages.alert_event` shapes them, each with its `owner`) go to their owners' groups.
    `market_message`: `market_batch(messages)`, if the caller built it.
    """
    if messages and market_message is None:
        market_message = market_batch(messages)
    if messages or alerts:
        _loop.run(_send(messages, watched, None, alerts, market_message))


def publish_alerts(events: list[dict]) -> None:
    """Fired events (each with its `owner`) to their owners' /ws/market sockets."""
    if events:
        _loop.run(_send([], set(), None, events, None))


class _LoopThread:
    """One event loop per process for publishing, kept alive between batches.

    `async_to_sync` would start a fresh loop per batch, and with it fresh Redis connections
    for the channel layer: most of the publish time at small batches. A loop that lives in
    its own thread keeps the layer's connection pool warm.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked worker child must not use its parent's loop thread (it has none).
            if self._loop is None or self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                threading.Thread(
                    target=self._loop.run_forever, name="marketflux-publisher", daemon=True
                ).start()
            return self._loop

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._ensure()).result(timeout)


_loop = _LoopThread()


async def _send(
    messages: list[dict],
    watched: set[str],
    overview: dict | None,
    alerts: list[dict],
    market_message: dict | None,
) -> None:
    layer = get_channel_layer()
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    for message in messages:
        if message["symbol"] in watched:
            by_symbol[message["symbol"]].append(message)
    sends = [
        layer.group_send(ticks_group(symbol), {"type": STOCK_TICKS_EVENT, "messages": ticks})
        for symbol, ticks in by_symbol.items()
    ]
    if market_message is not None:
        sends.append(layer.group_send(MARKET_GROUP, market_message))
    if overview is not None:
        sends.append(layer.group_send(MARKET_GROUP, overview))
    by_owner: dict[int, list[dict]] = defaultdict(list)
    for event in alerts:
        body = {k: v for k, v in event.items() if k != "owner"}
        by_owner[event["owner"]].append(shapes.alert(body))
    sends += [
        layer.group_send(alerts_group(owner), {"type": ALERTS_EVENT, "alerts": fired})
        for owner, fired in by_owner.items()
    ]
    await asyncio.gather(*sends)
