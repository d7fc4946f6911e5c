"""Scheduling and failure under real processes: shards, stale ticks, lost Redis, DB outage."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
import talib
from django.db import connection

from apps.indicators.models import IndicatorSnapshot
from apps.market.models import Tick
from apps.testing.network import TcpProxy
from apps.testing.processes import database_url_of_test_db
from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def slots() -> list:
    return list(Tick.objects.order_by("ts").values_list("ts", flat=True).distinct())


def test_two_shards_each_tick_their_share_and_together_every_symbol(
    market, redis_client, processes
):
    processes.celery_worker(MARKETFLUX_SHARDS="2")
    processes.celery_beat(MARKETFLUX_SHARDS="2")
    wait_for(lambda: len(slots()) >= 6, timeout=40, what="six slots")
    processes.stop("beat")
    time.sleep(1.0)
    per_slot = Counter(Tick.objects.values_list("ts", flat=True))
    # Each slot is complete: both shards' tasks ran for it, no symbol twice, none missing.
    assert set(per_slot.values()) == {5}


def test_ticks_scheduled_while_no_worker_ran_are_dropped_not_replayed(
    market, redis_client, processes
):
    processes.celery_beat()
    time.sleep(3.0)  # beat queues about six ticks that nobody takes
    processes.celery_worker()
    started = time.time()
    wait_for(lambda: Tick.objects.exists(), timeout=30, what="ticks after the worker started")
    time.sleep(2.0)
    processes.stop("beat")
    first = min(slots())
    # No tick from before the worker came up: the queued ones expired.
    assert first.timestamp() >= started - 1.0
    log = processes.log("worker")
    assert "expired" in log.lower() or "revoked" in log.lower()


def test_after_redis_is_flushed_the_worker_rebuilds_and_values_stay_right(
    market, redis_client, processes
):
    processes.celery_worker()
    processes.celery_beat()
    wait_for(lambda: Tick.objects.filter(symbol_id="AAPL").count() >= 40, timeout=60,
             what="40 ticks")  # fmt: skip
    processes.stop("beat")
    processes.kill("worker")
    processes.stop("worker")
    redis_client.flushdb()  # state, hot state and broker queues: all gone
    processes.celery_worker(name="worker2")
    processes.celery_beat(name="beat2")
    before = Tick.objects.filter(symbol_id="AAPL").count()
    wait_for(lambda: Tick.objects.filter(symbol_id="AAPL").count() >= before + 10, timeout=60,
             what="ticks after the flush")  # fmt: skip
    processes.stop("beat2")
    time.sleep(1.0)
    prices = np.array(
        Tick.objects.filter(symbol_id="AAPL").order_by("ts").values_list("price", flat=True)
    )
    ema = talib.EMA(prices, 20)
    rsi = talib.RSI(prices, 14)
    snapshots = list(IndicatorSnapshot.objects.filter(symbol_id="AAPL").order_by("ts"))
    assert len(snapshots) == len(prices)
    np.testing.assert_allclose([s.ema_20 for s in snapshots[19:]], ema[19:], rtol=1e-9)
    np.testing.assert_allclose([s.rsi_14 for s in snapshots[14:]], rsi[14:], rtol=1e-9)
    assert redis_client.get("mf:hot:AAPL") is not None


def test_a_database_outage_makes_the_task_retry_then_resume_without_a_crash_loop(
    market, redis_client, processes
):
    s = connection.settings_dict
    proxy = TcpProxy(s["HOST"], int(s["PORT"] or 5432))
    try:
        proxied = database_url_of_test_db().replace(f":{s['PORT'] or 5432}/", f":{proxy.port}/")
        worker = processes.celery_worker(DATABASE_URL=proxied)
        processes.celery_beat()
        wait_for(lambda: Tick.objects.exists(), timeout=40, what="ticks before the outage")
        proxy.cut()
        time.sleep(4.0)
        proxy.restore()
        outage_ended = time.time()
        wait_for(
            lambda: Tick.objects.filter(ts__gt=_aware(outage_ended)).exists(),
            timeout=40,
            what="ticks after the database came back",
        )
        processes.stop("beat")
        assert worker.poll() is None  # the worker never died
        log = processes.log("worker")
        assert "retrying" in log
        # Slots that failed were retried (or dropped once too old): whatever is stored is whole.
        per_slot = Counter(Tick.objects.values_list("ts", flat=True))
        assert set(per_slot.values()) == {5}
    finally:
        proxy.close()


def _aware(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)
