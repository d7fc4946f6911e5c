"""Alert evaluation through the real pipeline: hand-made price series, each condition and
frequency, replays, lost Redis state, and delivery to the owner's /ws/market socket."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from apps.alerts import conditions as c
from apps.alerts import evaluation
from apps.alerts.models import AlertEvent, AlertRule
from apps.indicators.models import IndicatorSnapshot
from apps.ingest.pipeline import TickBatch, ingest
from apps.market.models import Tick

pytestmark = pytest.mark.django_db

# A whole minute an hour ahead: rules created now are not expired, bars align to T0.
T0 = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def fresh_worker():
    """Each test's data is rolled back afterwards: nothing a worker remembers may outlive it."""
    evaluation.forget_process_state()


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("ada")


@pytest.fixture
def make_rule(owner, market, redis_client, django_capture_on_commit_callbacks):
    def make(condition: str, threshold: float | None = None, **fields) -> AlertRule:
        fields.setdefault("symbol_id", "AAPL")
        fields.setdefault("frequency", c.EVERY_TIME)
        with django_capture_on_commit_callbacks(execute=True):  # the index reload signal
            return AlertRule.objects.create(
                owner=owner, condition=condition, threshold=threshold, **fields
            )

    return make


def feed(prices, *, symbol="AAPL", start=0.0, step=1.0, size=100, per_batch=1) -> None:
    """Ingest one tick a `step` seconds apart, `per_batch` ticks to a batch."""
    rows = [(symbol, at(start + i * step), p, size) for i, p in enumerate(prices)]
    for i in range(0, len(rows), per_batch):
        ingest(TickBatch.from_rows(rows[i : i + per_batch]))


def fired(rule: AlertRule) -> list[tuple[float, float]]:
    """(seconds after T0, value) of each event of the rule, in time order."""
    return [
        ((ts - T0).total_seconds(), value)
        for ts, value in AlertEvent.objects.filter(rule=rule)
        .order_by("ts")
        .values_list("ts", "value")
    ]


def fired_at(rule: AlertRule) -> list[float]:
    return [s for s, _ in fired(rule)]


BATCHING = pytest.mark.parametrize("per_batch", [1, 3, 100], ids=["tick", "three", "one"])


@BATCHING
def test_price_above_and_below_fire_while_true(make_rule, per_batch):
    above = make_rule(c.PRICE_ABOVE, 100.0)
    below = make_rule(c.PRICE_BELOW, 100.0)
    feed([99.0, 101.0, 102.0, 100.0, 103.0, 98.0], per_batch=per_batch)
    assert fired(above) == [(1.0, 101.0), (2.0, 102.0), (4.0, 103.0)]
    assert fired(below) == [(0.0, 99.0), (5.0, 98.0)]


@BATCHING
def test_crossings_fire_only_on_the_tick_that_crosses(make_rule, per_batch):
    up = make_rule(c.CROSSES_ABOVE, 100.0)
    down = make_rule(c.CROSSES_BELOW, 100.0)
    # Starts above the level: not a crossing. Touching the level is not crossing it.
    feed([101.0, 102.0, 99.0, 100.0, 101.0, 100.5, 99.5, 99.0, 100.01], per_batch=per_batch)
    assert fired_at(up) == [4.0, 8.0]
    assert fired_at(down) == [2.0, 6.0]


def test_a_crossing_rule_made_while_the_price_is_past_the_level_waits_for_a_crossing(
    make_rule,
):
    feed([90.0, 95.0, 105.0])
    rule = make_rule(c.CROSSES_ABOVE, 100.0)
    feed([106.0, 107.0], start=3)
    assert fired(rule) == []
    feed([99.0, 101.0], start=5)
    assert fired(rule) == [(6.0, 101.0)]


def test_crossings_survive_a_flushed_redis(make_rule, redis_client):
    rule = make_rule(c.CROSSES_ABOVE, 100.0)
    feed([99.0, 99.5])
    redis_client.flushdb()  # the previous tick now comes from its stored snapshot
    feed([100.5], start=2)
    assert fired(rule) == [(2.0, 100.5)]


def test_change_over_a_window(make_rule):
    up = make_rule(c.CHANGE_UP, 2.0, window_seconds=60)
    down = make_rule(c.CHANGE_DOWN, 1.0, window_seconds=30)
    # t:      0      10     30     60     70     80     90
    prices = [100.0, 100.0, 101.0, 101.5, 102.1, 100.0, 99.9]
    times = [0, 10, 30, 60, 70, 80, 90]
    for t, p in zip(times, prices, strict=True):
        ingest(TickBatch.from_rows([("AAPL", at(t), p, 100)]))
    # At 70 s the price 60 s earlier (the tick at 0 s... at or before 10 s: 100.0) -> +2.1 %;
    # no tick is 60 s old before 60 s, so nothing can fire earlier.
    assert fired(up) == [(70.0, pytest.approx(2.1))]
    # 30 s windows: at 80 s vs 101.5 (at 50 s -> the tick at 30 s is 101.0), -0.99 %: no;
    # at 90 s vs the tick at 60 s (101.5): -1.576 %.
    assert fired(down) == [(90.0, pytest.approx((99.9 / 101.5 - 1) * 100))]


def test_rsi_levels_fire_where_the_stored_rsi_is_past_them(make_rule):
    above = make_rule(c.RSI_ABOVE, 70.0)
    below = make_rule(c.RSI_BELOW, 30.0)
    prices = [100 + i * 0.5 for i in range(25)] + [112 - i * 0.8 for i in range(25)]
    feed(prices, per_batch=7)
    rsi = list(
        IndicatorSnapshot.objects.filter(symbol_id="AAPL")
        .order_by("ts")
        .values_list("ts", "rsi_14")
    )
    expect_above = [(ts - T0).total_seconds() for ts, r in rsi if r is not None and r > 70]
    expect_below = [(ts - T0).total_seconds() for ts, r in rsi if r is not None and r < 30]
    assert expect_above
    assert expect_below
    assert fired_at(above) == expect_above
    assert fired_at(below) == expect_below


def test_anomalies_fire_with_the_z_score_as_value(make_rule):
    rule = make_rule(c.ANOMALY)
    prices = [100.0 + (0.01 if i % 2 else -0.01) for i in range(30)] + [104.0, 100.0]
    feed(prices, per_batch=4)
    flagged = [
        ((ts - T0).total_seconds(), z)
        for ts, z in IndicatorSnapshot.objects.filter(symbol_id="AAPL", anomaly=True)
        .order_by("ts")
        .values_list("ts", "zscore_20")
    ]
    assert flagged  # the jump to 104 is one
    assert fired(rule) == flagged


@BATCHING
def test_sma_crossing_ema(make_rule, per_batch):
    up = make_rule(c.SMA_CROSSES_ABOVE_EMA)
    down = make_rule(c.SMA_CROSSES_BELOW_EMA)
    prices = [100 + 3 * ((i // 15) % 2) + 0.1 * (i % 15) for i in range(80)]
    feed(prices, per_batch=per_batch)
    rows = list(
        IndicatorSnapshot.objects.filter(symbol_id="AAPL")
        .order_by("ts")
        .values_list("ts", "sma_20", "ema_20")
    )
    expect_up, expect_down = [], []
    for (_, s0, e0), (ts, s1, e1) in itertools.pairwise(rows):
        if None in (s0, e0, s1, e1):
            continue
        if s0 <= e0 and s1 > e1:
            expect_up.append((ts - T0).total_seconds())
        if s0 >= e0 and s1 < e1:
            expect_down.append((ts - T0).total_seconds())
    assert expect_up
    assert expect_down
    assert fired_at(up) == expect_up
    assert fired_at(down) == expect_down


def test_volume_spike_against_the_previous_twenty_bars(make_rule):
    rule = make_rule(c.VOLUME_SPIKE, 3.0)
    # One tick of 100 a minute for 20 minutes: the average bar is 100.
    for minute in range(20):
        ingest(TickBatch.from_rows([("AAPL", at(minute * 60), 100.0, 100)]))
    assert fired(rule) == []  # fewer than 20 bars before each of these
    # In the 21st minute the bar grows 100, 300, 700: 7x fires, 3x is not above 3x.
    ingest(
        TickBatch.from_rows(
            [
                ("AAPL", at(1200), 100.0, 100),
                ("AAPL", at(1210), 100.0, 200),
                ("AAPL", at(1220), 100.0, 400),
            ]
        )
    )
    assert fired(rule) == [(1220.0, 7.0)]
    # The same bar over later batches, and in a worker that did not see the earlier ones.
    ingest(TickBatch.from_rows([("AAPL", at(1230), 100.0, 100)]))
    evaluation.forget_process_state()
    ingest(TickBatch.from_rows([("AAPL", at(1240), 100.0, 100), ("AAPL", at(1250), 100.0, 50)]))
    assert fired(rule)[1:] == [(1230.0, 8.0), (1240.0, 9.0), (1250.0, 9.5)]


def test_once_fires_once_then_disables_the_rule(make_rule):
    rule = make_rule(c.PRICE_ABOVE, 100.0, frequency=c.ONCE)
    feed([101.0, 102.0, 103.0], per_batch=2)
    feed([104.0], start=3)
    assert fired_at(rule) == [0.0]
    rule.refresh_from_db()
    assert rule.active is False
    assert rule.last_fired_at == at(0)


def test_once_per_bar_fires_at_most_once_in_each_minute(make_rule):
    rule = make_rule(c.PRICE_ABOVE, 100.0, frequency=c.ONCE_PER_BAR)
    times = [10, 30, 50, 59.5, 60, 65, 130]
    for t in times:
        ingest(TickBatch.from_rows([("AAPL", at(t), 101.0, 100)]))
    assert fired_at(rule) == [10.0, 60.0, 130.0]


@pytest.mark.parametrize("per_batch", [1, 50])
def test_every_time_waits_out_the_cooldown(make_rule, per_batch):
    rule = make_rule(c.PRICE_ABOVE, 100.0, frequency=c.EVERY_TIME, cooldown_seconds=30)
    feed([101.0] * 10, step=10, per_batch=per_batch)
    assert fired_at(rule) == [0.0, 30.0, 60.0, 90.0]


def test_the_cooldown_holds_after_redis_forgets(make_rule, redis_client):
    rule = make_rule(c.PRICE_ABOVE, 100.0, frequency=c.EVERY_TIME, cooldown_seconds=60)
    feed([101.0])
    redis_client.flushdb()
    feed([101.0, 101.0], start=10, step=30)  # 10 s and 40 s: within the minute
    feed([101.0], start=60)
    assert fired_at(rule) == [0.0, 60.0]


def test_an_expired_rule_stops_firing(make_rule):
    rule = make_rule(c.PRICE_ABOVE, 100.0, expires_at=at(25))
    feed([101.0] * 5, step=10, per_batch=2)
    assert fired_at(rule) == [0.0, 10.0, 20.0]


def test_a_rule_for_every_symbol_fires_per_symbol(make_rule, market):
    rule = make_rule(c.PRICE_ABOVE, 50.0, symbol_id=None, frequency=c.ONCE_PER_BAR)
    rows = [(s.ticker, at(t), 60.0 if s.ticker != "TSLA" else 40.0, 10) for s in market
            for t in (0, 1)]  # fmt: skip
    ingest(TickBatch.from_rows(rows))
    got = AlertEvent.objects.filter(rule=rule).values_list("symbol", "ts")
    assert sorted(got) == sorted((s.ticker, at(0)) for s in market if s.ticker != "TSLA")


def test_messages_are_rendered_from_the_template(make_rule):
    rule = make_rule(c.PRICE_ABOVE, 100.0, message="{symbol} is at {price} ({condition})")
    plain = make_rule(c.PRICE_BELOW, 200.0)
    feed([101.25])
    assert AlertEvent.objects.get(rule=rule).message == "AAPL is at 101.25 (Price above)"
    assert AlertEvent.objects.get(rule=plain).message == "AAPL: Price below (101.25) at 101.25"


def test_a_replayed_batch_fires_nothing_twice(make_rule):
    rule = make_rule(c.PRICE_ABOVE, 100.0)
    batch = TickBatch.from_rows([("AAPL", at(0), 101.0, 1), ("AAPL", at(1), 102.0, 1)])
    first = ingest(batch)
    again = ingest(batch)
    assert (first.alerts, again.alerts) == (2, 0)
    assert fired_at(rule) == [0.0, 1.0]


def test_a_batch_that_fails_after_evaluating_fires_once_when_replayed(make_rule, monkeypatch):
    from apps.ingest import pipeline

    rule = make_rule(c.PRICE_ABOVE, 100.0, frequency=c.EVERY_TIME, cooldown_seconds=3600)
    batch = TickBatch.from_rows([("AAPL", at(0), 101.0, 1)])
    real_lap = pipeline._Stopwatch.lap

    def crash_after_alerts(self, stage):
        real_lap(self, stage)
        if stage == "alerts":
            raise ConnectionError("worker lost mid-batch")

    monkeypatch.setattr(pipeline._Stopwatch, "lap", crash_after_alerts)
    with pytest.raises(ConnectionError):
        ingest(batch)
    assert fired(rule) == []  # rolled back with the ticks
    monkeypatch.setattr(pipeline._Stopwatch, "lap", real_lap)
    # The cooldown state was already written, but never holds a rule back on its own tick.
    assert ingest(batch).alerts == 1
    assert fired_at(rule) == [0.0]


def test_a_rule_change_reaches_the_next_batch(make_rule, django_capture_on_commit_callbacks):
    rule = make_rule(c.PRICE_ABOVE, 100.0)
    feed([101.0])
    with django_capture_on_commit_callbacks(execute=True):
        rule.threshold = 150.0
        rule.save()
    feed([101.0, 151.0], start=1)
    assert fired_at(rule) == [0.0, 2.0]
    with django_capture_on_commit_callbacks(execute=True):
        rule.active = False
        rule.save()
    feed([152.0], start=3)
    assert fired_at(rule) == [0.0, 2.0]


@pytest.mark.parametrize("per_batch", [1, 7])
def test_change_over_a_window_on_a_long_walk_matches_the_stored_ticks(make_rule, per_batch):
    rule = make_rule(c.CHANGE_UP, 0.2, window_seconds=30)
    rng = random.Random(5)
    prices, price = [], 100.0
    for _ in range(400):
        price *= 1 + rng.gauss(0, 0.002)
        prices.append(price)
    feed(prices, step=1.5, per_batch=per_batch)
    ticks = list(Tick.objects.filter(symbol_id="AAPL").order_by("ts").values_list("ts", "price"))
    expected = []
    for ts, p in ticks:
        before = [q for t, q in ticks if t <= ts - timedelta(seconds=30)]
        if before and (p / before[-1] - 1) * 100 >= 0.2:
            expected.append(((ts - T0).total_seconds(), pytest.approx((p / before[-1] - 1) * 100)))
    assert len(expected) > 10
    assert fired(rule) == expected
