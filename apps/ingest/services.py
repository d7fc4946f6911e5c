"""The tick run: each scheduled slot simulated for a shard's symbols and ingested, the
batch's timings kept, and the market overview sent once a second after the batches."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from redis.exceptions import LockError

from apps.ingest import pipeline
from apps.market import keys, messages, selectors, simulator
from apps.market.models import Symbol
from apps.ops import fanout
from apps.ops.redis_client import redis_client

logger = logging.getLogger(__name__)

OVERVIEW_EVERY_MS = 1000


@dataclass
class TickRun:
    """The outcome of one scheduled tick run for a shard."""

    shard: int
    scheduled_at: datetime
    status: str  # "ok", "skipped" (a run was still going), "empty" (no active symbol)
    received: int = 0
    stored: int = 0
    lag_ms: float = 0.0


# Last price per ticker seen by this process, so consecutive slots need no lookup.
_last_seen: dict[str, tuple[datetime, float]] = {}


def _lock_ttl_seconds() -> float:
    """Long enough for any batch; short, so a killed worker blocks its shard only briefly."""
    return max(5.0, settings.TICK_INTERVAL * 10)


def _previous_prices(symbols: list[Symbol], scheduled_at: datetime) -> np.ndarray:
    previous_slot = scheduled_at.timestamp() - settings.TICK_INTERVAL
    missing = [
        s.ticker
        for s in symbols
        if s.ticker not in _last_seen
        or abs(_last_seen[s.ticker][0].timestamp() - previous_slot) > 1e-6
    ]
    stored = selectors.last_prices_before(tickers=missing, before=scheduled_at) if missing else {}
    prices = []
    for s in symbols:
        if s.ticker in stored:
            prices.append(stored[s.ticker])
        elif s.ticker in missing:
            prices.append(s.start_price)
        else:
            prices.append(_last_seen[s.ticker][1])
    return np.array(prices, dtype=np.float64)


def simulate_batch(*, symbols: list[Symbol], scheduled_at: datetime) -> pipeline.TickBatch:
    """One tick per symbol at the scheduled time, continuing from the last stored price,
    with the quote standing around it."""
    interval = settings.TICK_INTERVAL
    params = [
        simulator.SimulatorParams(s.ticker, s.drift, s.volatility, s.jump_rate) for s in symbols
    ]
    slot = simulator.slot_of(scheduled_at.timestamp(), interval)
    seed = settings.MARKETFLUX_SEED
    prices, sizes = simulator.step(
        params=params,
        last_prices=_previous_prices(symbols, scheduled_at),
        slot=slot,
        seed=seed,
        interval=interval,
    )
    return pipeline.TickBatch(
        symbols=[s.ticker for s in symbols],
        ts=[scheduled_at] * len(symbols),
        prices=prices,
        sizes=sizes,
        quotes=simulator.quotes(params=params, prices=prices, slot=slot, seed=seed),
    )


def scheduled_slot_time(epoch_seconds: float) -> datetime:
    """The start of the schedule slot `epoch_seconds` falls into, as an aware datetime."""
    interval = settings.TICK_INTERVAL
    slot = simulator.slot_of(epoch_seconds, interval)
    return datetime.fromtimestamp(round(slot * interval, 6), tz=UTC)


def market_tick(*, shard: int, shards: int, scheduled_at: datetime) -> TickRun:
    """Simulate and ingest one slot for a shard's active symbols; never overlaps itself."""
    started = time.time()
    run = TickRun(
        shard=shard,
        scheduled_at=scheduled_at,
        status="ok",
        lag_ms=(started - scheduled_at.timestamp()) * 1000.0,
    )
    # redis-py's Lock: SET NX with an expiry, released by a script only while its token
    # is still ours, so a run whose lock expired never frees the one that took over.
    lock = redis_client().lock(keys.tick_lock(shard), timeout=_lock_ttl_seconds())
    if not lock.acquire(blocking=False):
        redis_client().incr(keys.TICKS_SKIPPED)
        run.status = "skipped"
        logger.warning("tick for shard %s at %s skipped: a run is still going", shard, scheduled_at)
        return run
    try:
        symbols = selectors.active_symbols_for_shard(shard=shard, shards=shards)
        if not symbols:
            run.status = "empty"
            return run
        batch = simulate_batch(symbols=symbols, scheduled_at=scheduled_at)
        result = pipeline.ingest(batch)
        for ticker, price in zip(batch.symbols, batch.prices.tolist(), strict=True):
            _last_seen[ticker] = (scheduled_at, price)
        run.received, run.stored = result.received, result.stored
        total_ms = (time.time() - started) * 1000.0
        overview_began, overview_ms = time.perf_counter(), None
        if publish_overview_if_due(result.states):
            overview_ms = (time.perf_counter() - overview_began) * 1000.0
        _record_batch_stats(run, result, total_ms=total_ms, overview_ms=overview_ms)
        return run
    finally:
        try:
            lock.release()
        except LockError:  # expired, and maybe taken by another run: nothing of ours to free
            logger.warning("tick lock for shard %s expired during the run", shard)


def _record_batch_stats(
    run: TickRun, result: pipeline.IngestResult, *, total_ms: float, overview_ms: float | None
) -> None:
    """Keep the newest batch timings in Redis (`keys.BATCH_STATS`), for operators and the
    benchmarks (`overview_ms`: the market overview published after the batch, if this run
    sent it)."""
    entry = json.dumps(
        {
            "shard": run.shard,
            "scheduled_at": run.scheduled_at.isoformat(),
            "lag_ms": round(run.lag_ms, 3),
            "total_ms": round(total_ms, 3),
            "received": run.received,
            "stored": run.stored,
            "stage_ms": {k: round(v, 3) for k, v in result.stage_ms.items()},
            "overlapped_ms": round(result.overlapped_ms, 3),
            "overview_ms": None if overview_ms is None else round(overview_ms, 3),
        }
    )
    pipe = redis_client().pipeline(transaction=False)
    pipe.lpush(keys.BATCH_STATS, entry)
    pipe.ltrim(keys.BATCH_STATS, 0, keys.BATCH_STATS_KEEP - 1)
    pipe.execute()


def publish_overview_if_due(known: dict[str, dict]) -> bool:
    """The market overview to the market group, if no worker has sent one this second.

    Called after a batch (`pipeline.ingest`) with the hot states it wrote (`known`, by
    symbol); the other active symbols' come from Redis. One build a second, however many
    shards run, and after the batch's ticks are out, so it adds nothing to their latency.
    """
    if not redis_client().set(keys.OVERVIEW_DUE, b"1", nx=True, px=OVERVIEW_EVERY_MS):
        return False
    fanout.publisher().publish_overview(
        messages.overview_message(selectors.market_overview(known=known))
    )
    return True
