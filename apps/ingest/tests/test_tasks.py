"""The tick task under a real Celery worker and beat, on the real Redis broker."""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection

from apps.ingest.tasks import tick
from apps.market.models import Bar, Symbol, Tick
from apps.market.services import symbols_seed
from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def ticks_by_symbol() -> dict[str, list]:
    by_symbol: dict[str, list] = defaultdict(list)
    for symbol, ts in Tick.objects.order_by("ts").values_list("symbol_id", "ts"):
        by_symbol[symbol].append(ts)
    return by_symbol


def stored_slots() -> int:
    return Tick.objects.values("ts").distinct().count()


def test_the_worker_stores_a_tick_for_every_active_symbol(market, redis_client, processes):
    Symbol.objects.filter(ticker="AMZN").update(active=False)
    processes.celery_worker()
    tick.delay(shard=0, shards=1)
    stored = wait_for(
        lambda: len(ticks_by_symbol()) == 4 and ticks_by_symbol(),
        timeout=30,
        what="ticks from the worker",
    )
    assert sorted(stored) == ["AAPL", "GOOGL", "MSFT", "TSLA"]


def test_beat_drives_one_tick_per_symbol_per_interval(market, redis_client, processes):
    processes.celery_worker(TICK_INTERVAL="0.5")
    processes.celery_beat(TICK_INTERVAL="0.5")
    wait_for(lambda: Tick.objects.filter(symbol_id="AAPL").count() >= 9, timeout=40,
             what="ten slots of ticks")  # fmt: skip
    processes.stop("beat")
    time.sleep(1.0)  # let the worker finish what beat sent
    by_symbol = ticks_by_symbol()
    assert sorted(by_symbol) == sorted(s.ticker for s in market)
    reference = by_symbol["AAPL"]
    # Every symbol has the same slots; consecutive slots are one interval apart, no gaps.
    assert all(stamps == reference for stamps in by_symbol.values())
    gaps = {b - a for a, b in itertools.pairwise(reference)}
    assert gaps == {timedelta(seconds=0.5)}
    assert all(ts.microsecond in (0, 500_000) for ts in reference)


def test_killing_the_worker_mid_batch_loses_no_batch_half_and_counts_nothing_twice(
    db, redis_client, processes
):
    # Enough symbols that a batch takes long enough to be killed in the middle of.
    symbols_seed(tickers=[f"K{i:04d}" for i in range(3000)])
    processes.celery_beat(TICK_INTERVAL="0.5")
    rng = random.Random(7)
    for round_ in range(4):
        stored = stored_slots()
        processes.celery_worker(f"worker{round_}", TICK_INTERVAL="0.5")
        wait_for(lambda: stored_slots() > stored, timeout=60, what="a new batch")  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.5))  # somewhere inside the next batch
        processes.kill(f"worker{round_}")
        processes.stop(f"worker{round_}")
    processes.celery_worker(TICK_INTERVAL="0.5")
    time.sleep(2.0)
    processes.stop("beat")
    time.sleep(1.0)
    processes.stop("worker")

    with connection.cursor() as cursor:
        # Whole batches only: every stored slot has a tick for all 3,000 symbols.
        cursor.execute("SELECT ts, count(*) FROM market_tick GROUP BY ts ORDER BY ts")
        slots = cursor.fetchall()
        assert len(slots) >= 4
        assert {count for _, count in slots} == {3000}
        # Bars count every stored tick exactly once.
        cursor.execute(
            """
            SELECT count(*) FROM market_bar b
            JOIN (SELECT symbol_id, date_bin('1 minute', ts, '2000-01-01') AS m,
                         sum(size) AS volume, count(*) AS trades
                  FROM market_tick GROUP BY 1, 2) t
              ON t.symbol_id = b.symbol_id AND t.m = b.ts
            WHERE b.volume <> t.volume OR b.trades <> t.trades
            """
        )
        assert cursor.fetchone()[0] == 0
    assert Bar.objects.count() >= 3000
