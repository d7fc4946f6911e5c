"""Fan-out to the channel groups: the publisher the pipeline and alerts reach through
`apps.ops.fanout` (docs/architecture.md, "A tick's path", step 7)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import defaultdict
from collections.abc import Sequence

from channels.layers import get_channel_layer

from apps.alerts.messages import alert
from apps.market import keys
from apps.ops.redis_client import redis_client
from apps.streaming.groups import MARKET_GROUP, alerts_group, ticks_group

# The group messages' types; the process's broadcaster (`broadcast.py`) routes them to feeds.
MARKET_BATCH_EVENT = "market.batch"  # to `market`: {"messages": a batch's tick messages}
STOCK_TICKS_EVENT = "stock.ticks"  # to `ticks.<SYMBOL>`: {"messages": that symbol's}
MARKET_OVERVIEW_EVENT = "market.overview"  # to `market`: {"overview": ...}
ALERTS_EVENT = "alerts.fired"  # to `alerts.user.<id>`: {"user": id, "alerts": [...]}


def watch_symbol(symbol: str, delta: int) -> None:
    """Count sockets watching a symbol, so ticks are sent only to groups someone is in."""
    client = redis_client()
    remaining = client.hincrby(keys.WATCHED_SYMBOLS, symbol, delta)
    if remaining <= 0:
        client.hdel(keys.WATCHED_SYMBOLS, symbol)


def _prepared(message: dict) -> dict:
    prepare = getattr(get_channel_layer(), "prepare", None)
    return prepare(message) if prepare else message


class ChannelPublisher:
    """`apps.ops.fanout.Publisher` over the Channels layer (installed by `StreamingConfig`)."""

    def prepare_batch(self, ticks: list[dict]) -> dict:
        """Serialized already when the layer can (see `FanOutChannelLayer.prepare`)."""
        return _prepared({"type": MARKET_BATCH_EVENT, "messages": ticks})

    def publish_batch(
        self,
        ticks: list[dict],
        *,
        watched: set[str],
        alerts: Sequence[dict] = (),
        prepared: dict | None = None,
    ) -> None:
        """One send of the whole batch to the market group, one per watched symbol's group.

        One message per batch (not per tick) keeps the cost per batch flat in the number of
        /ws/market clients; per-symbol groups get only the symbols someone watches, so a
        batch of 5,000 symbols does not cost 5,000 sends. `alerts` (fired events as
        `apps.alerts.messages.alert_event` shapes them, each with its `owner`) go to their
        owners' groups. `prepared`: `prepare_batch(ticks)`, if the caller built it.
        """
        if ticks and prepared is None:
            prepared = self.prepare_batch(ticks)
        if ticks or alerts:
            _loop.run(_send(ticks=ticks, watched=watched, market_message=prepared, alerts=alerts))

    def publish_overview(self, overview: dict) -> None:
        message = _prepared({"type": MARKET_OVERVIEW_EVENT, "overview": overview})
        _loop.run(_send(market_message=message))

    def publish_alerts(self, events: Sequence[dict]) -> None:
        if events:
            _loop.run(_send(alerts=events))


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
    *,
    ticks: list[dict] = (),
    watched: set[str] = frozenset(),
    market_message: dict | None = None,
    alerts: Sequence[dict] = (),
) -> None:
    layer = get_channel_layer()
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    for message in ticks:
        if message["symbol"] in watched:
            by_symbol[message["symbol"]].append(message)
    sends = [
        layer.group_send(ticks_group(symbol), {"type": STOCK_TICKS_EVENT, "messages": sent})
        for symbol, sent in by_symbol.items()
    ]
    if market_message is not None:
        sends.append(layer.group_send(MARKET_GROUP, market_message))
    by_owner: dict[int, list[dict]] = defaultdict(list)
    for event in alerts:
        body = {k: v for k, v in event.items() if k != "owner"}
        by_owner[event["owner"]].append(alert(body))
    sends += [
        layer.group_send(
            alerts_group(owner), {"type": ALERTS_EVENT, "user": owner, "alerts": fired}
        )
        for owner, fired in by_owner.items()
    ]
    await asyncio.gather(*sends)


publisher = ChannelPublisher()
