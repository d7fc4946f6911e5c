"""The pipeline stages after storage: indicators, snapshots, hot state, fan-out, recovery."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import talib
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from apps.indicators.models import IndicatorSnapshot
from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, epoch_micros, ingest
from apps.ingest.services import publish_overview_if_due
from apps.market import keys
from apps.market.models import Bar, Tick
from apps.streaming.groups import MARKET_GROUP, ticks_group
from apps.streaming.publisher import watch_symbol

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_state")]

T0 = datetime(2026, 3, 2, 23, 50, tzinfo=UTC)
TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]


def gbm(n: int, seed: int, start: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0, 0.002, n)))


def series() -> dict[str, np.ndarray]:
    return {t: gbm(120, seed=i) for i, t in enumerate(TICKERS)}


def batch_at(i: int, prices: dict[str, np.ndarray]) -> TickBatch:
    ts = T0 + timedelta(seconds=0.5 * i)
    return TickBatch.from_rows([(t, ts, float(prices[t][i]), 100 + i) for t in TICKERS])


def talib_reference(prices: np.ndarray) -> dict[str, np.ndarray]:
    sma = talib.SMA(prices, 20)
    std = talib.STDDEV(prices, 20, 1)
    macd, signal, hist = talib.MACD(prices, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(prices, 20, 2, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = np.where(std > 0, (prices - sma) / std, np.nan)
    return {
        "sma_20": sma, "ema_20": talib.EMA(prices, 20), "rsi_14": talib.RSI(prices, 14),
        "zscore_20": zscore, "macd": macd, "macd_signal": signal, "macd_hist": hist,
        "bb_upper": upper, "bb_middle": middle, "bb_lower": lower,
    }  # fmt: skip


def assert_snapshots_match_talib(symbol: str) -> None:
    """Every stored snapshot equals TA-Lib run over the whole stored price series."""
    ticks = list(Tick.objects.filter(symbol_id=symbol).order_by("ts").values_list("ts", "price"))
    prices = np.array([p for _, p in ticks])
    reference = talib_reference(prices)
    snapshots = list(IndicatorSnapshot.objects.filter(symbol_id=symbol).order_by("ts"))
    assert [s.ts for s in snapshots] == [t for t, _ in ticks]
    for field, expected in reference.items():
        got = np.array(
            [np.nan if getattr(s, field) is None else getattr(s, field) for s in snapshots]
        )
        assert np.array_equal(np.isnan(got), np.isnan(expected)), field
        ok = ~np.isnan(expected)
        np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-9, atol=1e-9, err_msg=field)


def hot(redis_client, symbol: str) -> dict:
    return json.loads(redis_client.get(keys.hot(symbol)))


def test_snapshots_are_stored_for_every_tick_and_match_talib(market):
    prices = series()
    for i in range(120):
        ingest(batch_at(i, prices))
    assert IndicatorSnapshot.objects.count() == 600
    for ticker in TICKERS:
        assert_snapshots_match_talib(ticker)
    first = IndicatorSnapshot.objects.filter(symbol_id="AAPL").order_by("ts").first()
    assert first.sma_20 is None
    assert first.anomaly is False


def test_a_jump_is_flagged_as_an_anomaly_at_the_symbols_threshold(market):
    flat = {t: np.r_[100 + 0.01 * np.sin(np.arange(30)), [103.0]] for t in TICKERS}
    for i in range(31):
        ingest(batch_at(i, flat))
    last = IndicatorSnapshot.objects.filter(symbol_id="AAPL").order_by("-ts").first()
    assert last.zscore_20 > 3.0
    assert last.anomaly is True
    before = IndicatorSnapshot.objects.filter(symbol_id="AAPL").order_by("-ts")[1]
    assert before.anomaly is False


def test_hot_state_has_the_latest_tick_session_change_and_volume(market, redis_client):
    prices = series()
    for i in range(30):  # 23:50:00 to 23:50:14.5, one UTC day
        ingest(batch_at(i, prices))
    state = hot(redis_client, "MSFT")
    assert state["price"] == prices["MSFT"][29]
    assert state["ts"] == "2026-03-02T23:50:14.500000Z"
    assert state["change"] == pytest.approx(prices["MSFT"][29] - prices["MSFT"][0], abs=1e-12)
    assert state["change_pct"] == pytest.approx(state["change"] / prices["MSFT"][0] * 100)
    assert state["volume"] == sum(100 + i for i in range(30))
    stored = IndicatorSnapshot.objects.get(symbol_id="MSFT", ts=T0 + timedelta(seconds=14.5))
    assert state["indicators"]["sma_20"] == stored.sma_20
    assert state["indicators"]["rsi_14"] == stored.rsi_14


@pytest.mark.parametrize("fresh_worker", [False, True])
def test_the_session_restarts_at_midnight_utc_against_the_previous_close(
    market, redis_client, fresh_worker
):
    ingest(TickBatch.from_rows([("AAPL", T0, 50.0, 10), ("AAPL", T0 + timedelta(seconds=1),
                                                          48.0, 5)]))  # fmt: skip
    if fresh_worker:  # the next worker rebuilds the session from the database
        redis_client.flushdb()
        store.forget()
    ingest(TickBatch.from_rows([("AAPL", datetime(2026, 3, 3, 0, 0, tzinfo=UTC), 54.0, 7)]))
    state = hot(redis_client, "AAPL")
    assert (state["session_open"], state["prev_close"], state["volume"]) == (54.0, 48.0, 7)
    assert state["change"] == 6.0  # against the previous day's close, not today's open
    assert state["change_pct"] == pytest.approx(12.5)


def test_a_replayed_batch_changes_nothing_and_publishes_nothing(market, redis_client):
    prices = series()
    for i in range(40):
        ingest(batch_at(i, prices))
    before = (
        list(IndicatorSnapshot.objects.values_list()),
        list(Bar.objects.values_list()),
        {t: redis_client.get(keys.hot(t)) for t in TICKERS},
        redis_client.hgetall(keys.PIPELINE_STATE),
    )
    replay = ingest(batch_at(39, prices))
    assert replay.stored == 0
    assert replay.messages == []
    after = (
        list(IndicatorSnapshot.objects.values_list()),
        list(Bar.objects.values_list()),
        {t: redis_client.get(keys.hot(t)) for t in TICKERS},
        redis_client.hgetall(keys.PIPELINE_STATE),
    )
    assert after == before


def test_lost_redis_and_a_fresh_worker_rebuild_from_stored_ticks(market, redis_client):
    prices = {t: gbm(700, seed=10 + i) for i, t in enumerate(TICKERS)}
    for i in range(650):
        ingest(batch_at(i, prices))
    redis_client.flushdb()
    store.forget()
    result = ingest(batch_at(650, prices))
    assert sorted(result.rebuilt) == TICKERS
    for i in range(651, 700):
        ingest(batch_at(i, prices))
    for ticker in TICKERS:
        assert_snapshots_match_talib(ticker)
    # The session was rebuilt too: volume counts the whole day, not just since the rebuild.
    assert hot(redis_client, "AAPL")["volume"] == sum(100 + i for i in range(700))


def test_a_state_that_missed_a_committed_batch_is_not_used(market, redis_client):
    """A worker died after the commit and before the Redis write: Redis is one batch behind."""
    prices = series()
    for i in range(60):
        ingest(batch_at(i, prices))
    behind = redis_client.hgetall(keys.PIPELINE_STATE)
    ingest(batch_at(60, prices))
    redis_client.hset(keys.PIPELINE_STATE, mapping=behind)
    store.forget()
    result = ingest(batch_at(61, prices))
    assert sorted(result.rebuilt) == TICKERS
    for i in range(62, 120):
        ingest(batch_at(i, prices))
    for ticker in TICKERS:
        assert_snapshots_match_talib(ticker)


def test_a_state_ahead_of_the_database_is_not_used(market, redis_client):
    """The process advanced its state, then the transaction failed: the DB never had it."""
    prices = series()
    for i in range(60):
        ingest(batch_at(i, prices))
    ts = T0 + timedelta(seconds=30)
    store.apply(TICKERS, [epoch_micros(ts)] * 5, np.full(5, 999.0), [1] * 5)  # rolled back later
    result = ingest(batch_at(60, prices))
    assert result.rebuilt == []  # Redis still had the right state
    for i in range(61, 120):
        ingest(batch_at(i, prices))
    for ticker in TICKERS:
        assert_snapshots_match_talib(ticker)


async def _drain(layer, channel: str, quiet_for: float) -> list[dict]:
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), quiet_for))
        except TimeoutError:
            return got


def test_each_batch_is_one_market_message_and_watched_symbols_get_their_ticks(market, redis_client):
    prices = series()

    async def listen_while_ingesting() -> tuple[list[dict], list[dict], list[dict]]:
        # The pub/sub layer lives on one event loop: subscribe, ingest and receive on it.
        layer = get_channel_layer()
        market_channel = await layer.new_channel()
        aapl_channel = await layer.new_channel()
        tsla_channel = await layer.new_channel()
        await layer.group_add(MARKET_GROUP, market_channel)
        await layer.group_add(ticks_group("AAPL"), aapl_channel)
        await layer.group_add(ticks_group("TSLA"), tsla_channel)
        await sync_to_async(watch_symbol)("AAPL", +1)  # a /ws/stocks/AAPL socket is open
        await sync_to_async(ingest)(batch_at(0, prices))
        await sync_to_async(ingest)(batch_at(1, prices))
        await sync_to_async(ingest)(batch_at(1, prices))  # replayed: sends nothing
        return (
            await _drain(layer, market_channel, 1.0),
            await _drain(layer, aapl_channel, 0.3),
            await _drain(layer, tsla_channel, 0.3),
        )

    market_events, aapl, tsla = async_to_sync(listen_while_ingesting)()
    assert [e["type"] for e in market_events] == ["market.batch", "market.batch"]
    batches = market_events
    assert [len(b["messages"]) for b in batches] == [5, 5]
    tick = next(m for m in batches[1]["messages"] if m["symbol"] == "GOOGL")
    assert tick == {
        "type": "tick",
        "symbol": "GOOGL",
        "ts": "2026-03-02T23:50:00.500000Z",
        "price": prices["GOOGL"][1],
        "size": 101,
        "volume": 201,  # the day's: 100 in the first batch, 101 in this one
        # against the day's open (no day before it): the first batch's price
        "change": pytest.approx(prices["GOOGL"][1] - prices["GOOGL"][0], abs=1e-12),
        "change_pct": pytest.approx(
            (prices["GOOGL"][1] - prices["GOOGL"][0]) / prices["GOOGL"][0] * 100, abs=1e-12
        ),
        "bid": None, "ask": None, "bid_size": None, "ask_size": None,  # a source without quotes
        "indicators": {
            "sma_20": None, "ema_20": None, "rsi_14": None, "zscore_20": None,
            "anomaly": False, "macd": None, "macd_signal": None, "macd_hist": None,
            "bb_upper": None, "bb_middle": None, "bb_lower": None,
        },
    }  # fmt: skip
    assert [[m["ts"] for m in e["messages"]] for e in aapl] == [
        ["2026-03-02T23:50:00Z"],
        ["2026-03-02T23:50:00.500000Z"],
    ]
    assert tsla == []


def ingest_and_overview(batch: TickBatch) -> bool:
    """A batch as the tick task runs it: the batch, then the overview if one is due."""
    return publish_overview_if_due(ingest(batch).states)


def test_the_overview_goes_out_at_most_once_a_second_after_the_batch(market, redis_client):
    prices = series()

    async def listen_while_ingesting() -> tuple[list[bool], list[dict]]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(MARKET_GROUP, channel)
        sent = [await sync_to_async(ingest_and_overview)(batch_at(i, prices)) for i in range(3)]
        return sent, await _drain(layer, channel, 1.0)

    sent, events = async_to_sync(listen_while_ingesting)()
    assert sent == [True, False, False]  # three batches within a second: one overview
    assert [e["type"] for e in events] == [
        "market.batch", "market.overview", "market.batch", "market.batch"
    ]  # fmt: skip
    overview = events[1]["overview"]
    assert {row["symbol"]: row["price"] for row in overview["symbols"]} == {
        t: prices[t][0] for t in TICKERS
    }


def test_the_overview_of_a_partial_batch_covers_every_active_symbol(market, redis_client):
    # A shard's batch holds some symbols; the overview still shows the whole market.
    ingest_and_overview(TickBatch.from_rows([("MSFT", T0, 400.0, 10), ("TSLA", T0, 250.0, 10)]))
    redis_client.delete(keys.OVERVIEW_DUE)

    async def overview_of_next_batch() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(MARKET_GROUP, channel)
        later = T0 + timedelta(seconds=0.5)
        batch = TickBatch.from_rows([("AAPL", later, 190.0, 5)])
        await sync_to_async(ingest_and_overview)(batch)
        events = await _drain(layer, channel, 1.0)
        return next(e["overview"] for e in events if e["type"] == "market.overview")

    overview = async_to_sync(overview_of_next_batch)()
    prices = {row["symbol"]: row["price"] for row in overview["symbols"]}
    assert prices == {"AAPL": 190.0, "MSFT": 400.0, "TSLA": 250.0, "AMZN": None, "GOOGL": None}


def test_a_corrupt_state_in_redis_is_rebuilt_not_trusted(market, redis_client):
    prices = series()
    for i in range(60):
        ingest(batch_at(i, prices))
    good = redis_client.hget(keys.PIPELINE_STATE, "AAPL")
    # The header still says "current", but the engine part is garbage.
    redis_client.hset(keys.PIPELINE_STATE, "AAPL", good[:32] + b"\x00" * (len(good) - 32))
    store.forget()
    result = ingest(batch_at(60, prices))
    assert "AAPL" in result.rebuilt
    for i in range(61, 120):
        ingest(batch_at(i, prices))
    assert_snapshots_match_talib("AAPL")


# The indicator work runs on a helper thread while PostgreSQL stores the ticks, betting that
# they are all new and that the newest state it finds is the one the database vouches for.
# A won bet must give exactly what the careful path gives; a lost one must leave no trace.


def test_a_worker_continues_from_the_state_another_worker_shared(market, redis_client):
    """Pool processes take turns at a shard: each continues from the other's shared state."""
    prices = series()
    overlapped = []
    for i in range(60):
        overlapped.append(ingest(batch_at(i, prices)).overlapped_ms > 0)
        store.forget()  # the next batch goes to a process that holds no state
    assert not overlapped[0]  # nothing shared yet: the careful path rebuilds
    assert all(overlapped[1:])  # then every batch takes the other process's shared state
    for ticker in TICKERS:
        assert_snapshots_match_talib(ticker)


def test_a_replay_between_batches_does_not_advance_the_indicators(market, redis_client):
    prices = series()
    for i in range(40):
        ingest(batch_at(i, prices))
        if i % 7 == 6:
            assert ingest(batch_at(i, prices)).stored == 0  # Celery redelivers the batch
    for ticker in TICKERS:
        assert_snapshots_match_talib(ticker)


def test_a_threshold_edited_between_batches_applies_to_the_next_tick(market):
    from apps.market.models import Symbol

    prices = series()
    for i in range(40):
        ingest(batch_at(i, prices))
    Symbol.objects.filter(ticker="AMZN").update(anomaly_threshold=0.01)
    for i in range(40, 60):
        ingest(batch_at(i, prices))
    after = IndicatorSnapshot.objects.filter(symbol_id="AMZN", ts__gte=T0 + timedelta(seconds=20))
    assert len(after) == 20
    for snapshot in after:
        assert snapshot.anomaly == (abs(snapshot.zscore_20) > 0.01)
    assert any(s.anomaly for s in after)


# The last tick stored before a symbol's new one is read from the 1-minute bars (their
# newest tick); it must be right across minute rollovers, gaps and late ticks, or a state
# that missed a tick would be taken for current.


def test_states_continue_across_minute_rollovers_and_gaps(market, redis_client):
    prices = series()
    # Half-second ticks through two rollovers, then gaps: a whole minute without ticks and
    # one of several minutes.
    offsets = [55 + 0.5 * i for i in range(20)] + [125 + 0.5 * i for i in range(20)]
    offsets += [200 + 0.5 * i for i in range(20)] + [500 + 0.5 * i for i in range(20)]
    results = []
    for i, offset in enumerate(offsets):
        ts = T0 + timedelta(seconds=offset)
        results.append(
            ingest(TickBatch.from_rows([(t, ts, float(prices[t][i]), 100) for t in TICKERS]))
        )
    assert results[0].rebuilt == TICKERS  # a fresh start: nothing to continue from
    for result in results[1:]:
        assert result.rebuilt == []
        assert result.overlapped_ms > 0  # the state the helper thread bet on was the right one
    for ticker in TICKERS:
        assert_snapshots_match_talib(ticker)


def test_a_late_tick_is_computed_from_the_ticks_before_it(market, redis_client):
    prices = series()
    for i in range(40):
        ingest(batch_at(i, prices))
    late_ts = T0 + timedelta(seconds=0.5 * 38 + 0.25)  # between the last two stored ticks
    result = ingest(TickBatch.from_rows([("MSFT", late_ts, 101.0, 1)]))
    assert result.rebuilt == ["MSFT"]
    stored = list(
        Tick.objects.filter(symbol_id="MSFT", ts__lte=late_ts).order_by("ts").values_list("price")
    )
    expected = talib_reference(np.array([p for (p,) in stored]))
    late = IndicatorSnapshot.objects.get(symbol_id="MSFT", ts=late_ts)
    for field, values in expected.items():
        assert getattr(late, field) == pytest.approx(values[-1], rel=1e-9), field
