"""The tick task: a thin adapter over `services.market_tick`.

It keeps the name `market.tick`, which beat schedules and worker queues were set up with
before the pipeline moved to its own app."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import redis
from celery import shared_task, signals
from django.conf import settings
from django.db import InterfaceError, OperationalError

from apps.ingest import metrics, services
from apps.market import keys
from apps.ops import logcontext
from apps.ops.redis_client import redis_client

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError)
# A tick older than this many intervals is dropped instead of retried: a late price is no price.
MAX_TICK_AGE_INTERVALS = 20


def _scheduled_epoch(request, interval: float) -> float:
    """When beat scheduled this run: its expiry (sent + one interval) minus the interval."""
    expires = getattr(request, "expires", None)
    if expires:
        sent = datetime.fromisoformat(expires).timestamp() - interval
        return sent + 1e-3  # a publish lands just after its slot boundary
    return time.time()


@shared_task(bind=True, name="market.tick", max_retries=5, ignore_result=True)
def tick(self, shard: int = 0, shards: int | None = None, scheduled_ts: float | None = None):
    """Simulate one slot for a shard; the slot time comes from the schedule, not the clock.
    Its log lines carry the task's id as `batch_id`."""
    with logcontext.batch(self.request.id or ""):
        return _tick(self, shard, shards, scheduled_ts)


def _tick(self, shard: int, shards: int | None, scheduled_ts: float | None) -> str:
    interval = settings.TICK_INTERVAL
    shards = shards or settings.MARKETFLUX_SHARDS
    if scheduled_ts is None:
        scheduled_ts = services.scheduled_slot_time(
            _scheduled_epoch(self.request, interval)
        ).timestamp()
    if time.time() - scheduled_ts > MAX_TICK_AGE_INTERVALS * max(interval, 0.05):
        metrics.TICK_DROPPED.labels("too_late").inc()
        redis_client().incr(keys.TICKS_EXPIRED)
        logger.warning("dropping tick for shard %s scheduled at %s: too late", shard, scheduled_ts)
        return "expired"
    try:
        run = services.market_tick(
            shard=shard,
            shards=shards,
            scheduled_at=services.scheduled_slot_time(scheduled_ts),
            run_id=self.request.id,  # the same for a redelivery and a retry of this run
        )
    except TRANSIENT_ERRORS as exc:
        logger.warning("tick for shard %s failed (%s); retrying", shard, exc)
        if self.max_retries is None or self.request.retries < self.max_retries:
            metrics.TICK_RETRIES.labels(type(exc).__name__).inc()
        else:  # retry() raises `exc` itself: the slot is lost
            metrics.TICK_DROPPED.labels("failed").inc()
        raise self.retry(
            exc=exc,
            kwargs={"shard": shard, "shards": shards, "scheduled_ts": scheduled_ts},
            countdown=min(interval, 1.0),
            expires=None,
        ) from exc
    metrics.TICK_RUNS.labels(run.status).inc()
    return run.status


@signals.task_revoked.connect
def _count_expired(sender=None, expired: bool = False, **kwargs) -> None:
    """A tick Celery discarded unrun, past its expiry (one interval after beat sent it)."""
    if expired and getattr(sender, "name", None) == "market.tick":
        metrics.TICK_DROPPED.labels("expired").inc()
