"""The tick run: one tick per active symbol per slot, never overlapping, continuing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from apps.ingest import services
from apps.market import keys
from apps.market.models import Symbol, Tick

pytestmark = pytest.mark.django_db

SLOT = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def run_slots(n: int, *, start: int = 0, shard: int = 0, shards: int = 1) -> None:
    for i in range(start, start + n):
        services.market_tick(
            shard=shard, shards=shards, scheduled_at=SLOT + timedelta(seconds=0.5 * i)
        )


def prices() -> list[tuple[str, datetime, float, int]]:
    return list(
        Tick.objects.order_by("symbol_id", "ts").values_list("symbol_id", "ts", "price", "size")
    )


def test_each_run_stores_one_tick_per_active_symbol(market, redis_client, reset_simulator_cache):
    Symbol.objects.filter(ticker="TSLA").update(active=False)
    run_slots(4)
    per_symbol = {}
    for symbol, ts, _, _ in prices():
        per_symbol.setdefault(symbol, []).append(ts)
    assert sorted(per_symbol) == ["AAPL", "AMZN", "GOOGL", "MSFT"]
    expected = [SLOT + timedelta(seconds=0.5 * i) for i in range(4)]
    assert all(ts == expected for ts in per_symbol.values())


def test_prices_start_at_the_symbols_start_price(market, redis_client, reset_simulator_cache):
    run_slots(1)
    for symbol in market:
        tick = Tick.objects.get(symbol=symbol)
        assert tick.price == pytest.approx(symbol.start_price, rel=0.01)


def test_every_simulated_trade_prints_inside_its_stored_quote(
    market, redis_client, reset_simulator_cache
):
    run_slots(20)
    ticks = Tick.objects.values_list("price", "bid", "ask", "bid_size", "ask_size")
    assert len(ticks) == 20 * len(market)
    for price, bid, ask, bid_size, ask_size in ticks:
        assert bid <= price <= ask
        assert bid < ask
        assert [round(side * 100, 6).is_integer() for side in (bid, ask)] == [True, True]  # ¢
        assert {bid_size % 100, ask_size % 100} == {0}
        assert min(bid_size, ask_size) >= 100


def test_a_restarted_worker_continues_from_the_last_stored_price(
    market, redis_client, reset_simulator_cache
):
    run_slots(10)
    straight = prices()
    Tick.objects.all().delete()
    run_slots(5)
    services._last_seen.clear()  # a new worker process remembers nothing
    run_slots(5, start=5)
    assert prices() == straight


def test_replaying_a_slot_stores_nothing_new(market, redis_client, reset_simulator_cache):
    run_slots(3)
    before = prices()
    services._last_seen.clear()
    run_slots(1, start=1)  # slot 1 again, as a redelivered task would
    assert prices() == before


def test_a_run_while_another_holds_the_shard_is_skipped_and_counted(
    market, redis_client, reset_simulator_cache
):
    redis_client.set(keys.tick_lock(0), "someone-else")
    run = services.market_tick(shard=0, shards=1, scheduled_at=SLOT)
    assert run.status == "skipped"
    assert not Tick.objects.exists()
    assert int(redis_client.get(keys.TICKS_SKIPPED)) == 1
    redis_client.delete(keys.tick_lock(0))
    assert services.market_tick(shard=0, shards=1, scheduled_at=SLOT).status == "ok"
    assert redis_client.get(keys.tick_lock(0)) is None  # released after the run


def test_a_redelivered_run_takes_the_lock_over_from_its_dead_first_delivery(
    market, redis_client, reset_simulator_cache, caplog
):
    # The first delivery of run "task-1" died in the middle of the slot, holding the lock.
    dead = services.ShardLock(0, run_id="task-1")
    assert dead.acquire()
    run = services.market_tick(shard=0, shards=1, scheduled_at=SLOT, run_id="task-1")
    assert run.status == "ok"
    assert Tick.objects.filter(ts=SLOT).count() == len(market)
    assert redis_client.get(keys.tick_lock(0)) is None  # released after the run
    assert "took the lock over from an earlier delivery of this run" in caplog.text
    (entry,) = [json.loads(e) for e in redis_client.lrange(keys.BATCH_STATS, 0, -1)]
    assert (entry["run"], entry["stored"]) == ("task-1", len(market))


def test_another_run_never_takes_the_lock_over(market, redis_client, reset_simulator_cache):
    other = services.ShardLock(0, run_id="task-1")
    assert other.acquire()
    run = services.market_tick(shard=0, shards=1, scheduled_at=SLOT, run_id="task-2")
    assert run.status == "skipped"
    assert not Tick.objects.exists()
    assert services.tick_lock_holder(0)["run"] == "task-1"


def test_a_holder_whose_lock_was_taken_over_cannot_free_it(redis_client):
    first = services.ShardLock(0, run_id="task-1")
    again = services.ShardLock(0, run_id="task-1")
    assert first.acquire()
    assert again.acquire()  # the redelivery, while the first is still alive
    assert not first.release()
    assert services.tick_lock_holder(0)["nonce"] == json.loads(again.token)["nonce"]
    assert again.release()
    assert services.tick_lock_holder(0) is None


def test_the_lock_names_its_holder(redis_client):
    lock = services.ShardLock(3, run_id="task-9")
    assert lock.acquire()
    holder = services.tick_lock_holder(3)
    assert (holder["run"], holder["pid"]) == ("task-9", os.getpid())
    assert redis_client.pttl(keys.tick_lock(3)) > 0  # it expires if never released


def test_batch_timings_are_kept_for_the_metrics(market, redis_client, reset_simulator_cache):
    run_slots(2)
    entries = [json.loads(e) for e in redis_client.lrange(keys.BATCH_STATS, 0, -1)]
    assert [e["stored"] for e in entries] == [5, 5]
    assert all("store" in e["stage_ms"] and "lag_ms" in e for e in entries)
    first_run = entries[-1]  # newest first; the first run of a second sends the overview
    assert first_run["overview_ms"] > 0
