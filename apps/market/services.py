"""Writes of market data: seeding symbols and running the simulator through the pipeline."""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from apps.market import keys, pipeline, selectors, simulator, timescale
from apps.market.constants import DEFAULT_SYMBOLS
from apps.market.models import Bar, Symbol, Tick
from apps.ops.redis_client import redis_client
from apps.streaming.publisher import publish_overview_if_due

logger = logging.getLogger(__name__)

# A generic profile for tickers named in MARKETFLUX_SYMBOLS that are not in DEFAULT_SYMBOLS.
_GENERIC_SYMBOL = {
    "exchange": "NYSE",
    "sector": "",
    "start_price": 100.0,
    "drift": 0.05,
    "volatility": 0.30,
    "jump_rate": 12.0,
}


def symbols_seed(*, tickers: list[str] | None = None) -> tuple[int, int]:
    """Create the default market (or `tickers`) if missing; returns (created, existing).

    Existing symbols are left exactly as an admin may have edited them.
    """
    defaults = {d["ticker"]: d for d in DEFAULT_SYMBOLS}
    wanted = tickers or list(defaults)
    created = 0
    with transaction.atomic():
        for ticker in wanted:
            spec = defaults.get(ticker) or {"ticker": ticker, "name": ticker, **_GENERIC_SYMBOL}
            fields = {k: v for k, v in spec.items() if k != "ticker"}
            if Symbol.objects.filter(ticker=ticker).exists():
                continue
            symbol = Symbol(ticker=ticker, **fields)
            symbol.full_clean()  # a bad ticker in MARKETFLUX_SYMBOLS fails here, clearly
            symbol.save(force_insert=True)
            created += 1
    return created, len(wanted) - created


def symbols_set_active(*, tickers: list[str], active: bool) -> int:
    return Symbol.objects.filter(ticker__in=tickers).exclude(active=active).update(active=active)


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

# Releases the lock only if we still own it (the token), so an expired lock that another
# run took over is never deleted by the late one.
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _lock_ttl_ms() -> int:
    """Long enough for any batch; short, so a killed worker blocks its shard only briefly."""
    return max(5_000, int(settings.TICK_INTERVAL * 10_000))


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
    """One tick per symbol at the scheduled time, continuing from the last stored price."""
    interval = settings.TICK_INTERVAL
    params = [
        simulator.SimulatorParams(s.ticker, s.drift, s.volatility, s.jump_rate) for s in symbols
    ]
    prices, sizes = simulator.step(
        params=params,
        last_prices=_previous_prices(symbols, scheduled_at),
        slot=simulator.slot_of(scheduled_at.timestamp(), interval),
        seed=settings.MARKETFLUX_SEED,
        interval=interval,
    )
    return pipeline.TickBatch(
        symbols=[s.ticker for s in symbols],
        ts=[scheduled_at] * len(symbols),
        prices=prices,
        sizes=sizes,
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
    client = redis_client()
    token = secrets.token_hex(8)
    lock = keys.tick_lock(shard)
    if not client.set(lock, token, nx=True, px=_lock_ttl_ms()):
        client.incr(keys.TICKS_SKIPPED)
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
        client.eval(_RELEASE_LOCK, 1, lock, token)


def _record_batch_stats(
    run: TickRun, result: pipeline.IngestResult, *, total_ms: float, overview_ms: float | None
) -> None:
    """Keep the newest batch timings in Redis, for the metrics endpoint (`overview_ms`:
    the market overview published after the batch, if this run sent it)."""
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


def ticks_prune() -> int:
    """Delete ticks past retention where no TimescaleDB policy does it; returns rows removed."""
    if timescale.installed(connection):
        return 0
    now = datetime.now(UTC)
    removed, _ = Tick.objects.filter(
        ts__lt=now - timedelta(days=settings.MARKETFLUX_TICK_RETENTION_DAYS)
    ).delete()
    if settings.MARKETFLUX_BAR_RETENTION_DAYS:
        bars, _ = Bar.objects.filter(
            ts__lt=now - timedelta(days=settings.MARKETFLUX_BAR_RETENTION_DAYS)
        ).delete()
        removed += bars
    return removed
