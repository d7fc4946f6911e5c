"""The tick run: each scheduled slot simulated for a shard's symbols and ingested, the
batch's timings kept, and the market overview sent once a second after the batches."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.conf import settings

from apps.ingest import metrics, pipeline
from apps.market import keys, messages, selectors, simulator
from apps.market.models import Symbol
from apps.ops import fanout, status
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
    run_id: str | None = None  # the task's id


# Last price per ticker seen by this process, so consecutive slots need no lookup.
_last_seen: dict[str, tuple[datetime, float]] = {}


def _lock_ttl_seconds() -> float:
    """Long enough for any batch; short, so a killed worker blocks its shard only briefly."""
    return max(5.0, settings.TICK_INTERVAL * 10)


class ShardLock:
    """The shard's tick lock (`keys.tick_lock`): SET NX with an expiry, released by a
    script only while its token is still ours, so a run whose lock expired never frees the
    one that took over.

    The token names the run holding it: the task's id (`run`), host and pid, as JSON
    (`redis-cli GET mf:lock:tick:0` says who). A task comes back from the broker when the
    worker that had it died or lost its connection (acks_late); killed in the middle of
    the run, that worker left the lock held until it expires, and every run until then
    would be skipped. So a run finding the lock held by an earlier delivery of itself (the
    same task id) takes it over: that holder is gone, or is doing the same slot, which
    stores nothing twice (docs/architecture.md#replays-and-idempotence).
    """

    _RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
        "return 0"
    )
    _TAKE_OVER = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then "
        "return redis.call('set', KEYS[1], ARGV[2], 'px', ARGV[3]) end return false"
    )

    def __init__(self, shard: int, *, run_id: str | None):
        self.key = keys.tick_lock(shard)
        self.run_id = run_id
        self.token = json.dumps(
            {"run": run_id, "host": socket.gethostname(), "pid": os.getpid(),
             "nonce": uuid.uuid4().hex}
        )  # fmt: skip
        self.taken_over: dict | None = None  # the holder whose lock this run took over

    def acquire(self) -> bool:
        client = redis_client()
        ttl_ms = int(_lock_ttl_seconds() * 1000)
        if client.set(self.key, self.token, nx=True, px=ttl_ms):
            return True
        held = client.get(self.key)
        holder = _holder(held)
        if self.run_id is None or holder is None or holder.get("run") != self.run_id:
            return False
        if not client.eval(self._TAKE_OVER, 1, self.key, held, self.token, ttl_ms):
            return False  # released or taken meanwhile; a run skipped is counted as one
        self.taken_over = holder
        return True

    def release(self) -> bool:
        """False when the lock was no longer ours (it expired, maybe taken over)."""
        return bool(redis_client().eval(self._RELEASE, 1, self.key, self.token))


def _holder(raw: bytes | None) -> dict | None:
    try:
        holder = json.loads(raw) if raw is not None else None
    except ValueError:  # not a token of ours
        return None
    return holder if isinstance(holder, dict) else None


def tick_lock_holder(shard: int) -> dict | None:
    """Who holds the shard's tick lock: {"run", "host", "pid", "nonce"}, or None."""
    return _holder(redis_client().get(keys.tick_lock(shard)))


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


def market_tick(
    *, shard: int, shards: int, scheduled_at: datetime, run_id: str | None = None
) -> TickRun:
    """Simulate and ingest one slot for a shard's active symbols; never overlaps itself.

    `run_id` names the run (the task's id): a redelivery of the same run takes the lock
    over from a holder that died in the middle of it (`ShardLock`)."""
    started = time.time()
    run = TickRun(
        shard=shard,
        scheduled_at=scheduled_at,
        status="ok",
        lag_ms=(started - scheduled_at.timestamp()) * 1000.0,
        run_id=run_id,
    )
    lock = ShardLock(shard, run_id=run_id)
    if not lock.acquire():
        redis_client().incr(keys.TICKS_SKIPPED)
        run.status = "skipped"
        logger.warning("tick for shard %s at %s skipped: a run is still going", shard, scheduled_at)
        return run
    if lock.taken_over is not None:
        logger.warning(
            "tick for shard %s at %s: took the lock over from an earlier delivery of this run "
            "(pid %s on %s), which died or lost the broker in the middle of it",
            shard, scheduled_at, lock.taken_over.get("pid"), lock.taken_over.get("host"),
        )  # fmt: skip
    try:
        symbols = selectors.active_symbols_for_shard(shard=shard, shards=shards)
        if not symbols:
            run.status = "empty"
            _report(run)
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
        if not lock.release():  # expired, and maybe taken by another run: nothing of ours
            logger.warning("tick lock for shard %s expired during the run", shard)


def _record_batch_stats(
    run: TickRun, result: pipeline.IngestResult, *, total_ms: float, overview_ms: float | None
) -> None:
    """Keep the newest batch timings in Redis (`keys.BATCH_STATS`), for operators and the
    benchmarks (`run`: the task's id; `overview_ms`: the market overview published after
    the batch, if this run sent it)."""
    entry = json.dumps(
        {
            "shard": run.shard,
            "run": run.run_id,
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
    _report(run, pipe=pipe)
    pipe.execute()


def _report(run: TickRun, *, pipe=None) -> None:
    """The shard's last run, for `/ready`'s tick freshness (`apps.ops.status`, kind
    "pipeline"): a shard without symbols reports too, so an idle market is not "stuck"."""
    status.publish(
        status.PIPELINE, f"shard-{run.shard}",
        {"slot": run.scheduled_at.isoformat(), "status": run.status, "stored": run.stored},
        pipe=pipe,
    )  # fmt: skip


def publish_overview_if_due(known: dict[str, dict]) -> bool:
    """The market overview to the market group, if no worker has sent one this second.

    Called after a batch (`pipeline.ingest`) with the hot states it wrote (`known`, by
    symbol); the other active symbols' come from Redis. One build a second, however many
    shards run, and after the batch's ticks are out, so it adds nothing to their latency.
    """
    if not redis_client().set(keys.OVERVIEW_DUE, b"1", nx=True, px=OVERVIEW_EVERY_MS):
        return False
    began = time.perf_counter()
    fanout.publisher().publish_overview(
        messages.overview_message(selectors.market_overview(known=known))
    )
    metrics.STAGE_SECONDS.labels("overview").observe(time.perf_counter() - began)
    return True
