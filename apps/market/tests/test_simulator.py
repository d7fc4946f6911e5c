"""The simulator's statistics, determinism and continuation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.market.constants import SECONDS_PER_YEAR
from apps.market.simulator import SimulatorParams, quotes, slot_of, step


def _paths(*, n_paths: int, n_steps: int, interval: float, seed: int, **params) -> np.ndarray:
    """Log returns, shape (steps, paths), of independent symbols with the same parameters."""
    symbols = [SimulatorParams(f"P{i:04d}", **params) for i in range(n_paths)]
    prices = np.full(n_paths, 100.0)
    returns = np.empty((n_steps, n_paths))
    for slot in range(n_steps):
        new, _ = step(params=symbols, last_prices=prices, slot=slot, seed=seed, interval=interval)
        returns[slot] = np.log(new / prices)
        prices = new
    return returns


@pytest.mark.parametrize(("drift", "volatility"), [(0.08, 0.25), (-0.05, 0.6)])
def test_drift_and_volatility_match_the_parameters(drift, volatility):
    # 500 symbols x 2,000 daily steps = 2,740 simulated years: the drift estimate's standard
    # error is volatility / sqrt(2740), about 0.005 at 25 % and 0.011 at 60 % volatility.
    interval = 86_400.0
    returns = _paths(
        n_paths=500, n_steps=2000, interval=interval, seed=7,
        drift=drift, volatility=volatility, jump_rate=0.0,
    )  # fmt: skip
    dt = interval / SECONDS_PER_YEAR
    measured_volatility = returns.std() / math.sqrt(dt)
    measured_drift = returns.mean() / dt + 0.5 * measured_volatility**2
    assert measured_volatility == pytest.approx(volatility, rel=0.01)
    assert measured_drift == pytest.approx(drift, abs=4 * volatility / math.sqrt(returns.size * dt))


def test_returns_are_normal_without_jumps_and_fat_tailed_with_them():
    plain = _paths(n_paths=200, n_steps=500, interval=0.5, seed=3,
                   drift=0.0, volatility=0.3, jump_rate=0.0)  # fmt: skip
    jumpy = _paths(n_paths=200, n_steps=500, interval=0.5, seed=3,
                   drift=0.0, volatility=0.3, jump_rate=2000.0)  # fmt: skip
    sigma = 0.3 * math.sqrt(0.5 / SECONDS_PER_YEAR)
    assert np.abs(plain).max() < 6 * sigma  # 100,000 normal draws stay inside 6 sigma
    big_moves = np.abs(jumpy) > 5 * sigma
    # 2,000 jumps a day at 0.5 s ticks is a jump probability of about 1.15 % per tick.
    expected = 100_000 * -math.expm1(-2000.0 * 0.5 / 86_400)
    assert big_moves.sum() == pytest.approx(expected, rel=0.15)


def test_same_seed_same_market_other_seed_other_market():
    params = [SimulatorParams("AAPL", 0.08, 0.25, 12.0), SimulatorParams("TSLA", 0.1, 0.55, 24.0)]
    last = np.array([228.5, 248.9])
    a = step(params=params, last_prices=last, slot=1000, seed=42, interval=0.5)
    b = step(params=params, last_prices=last, slot=1000, seed=42, interval=0.5)
    c = step(params=params, last_prices=last, slot=1000, seed=43, interval=0.5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_a_symbols_tick_does_not_depend_on_the_other_symbols_in_the_batch():
    aapl = SimulatorParams("AAPL", 0.08, 0.25, 12.0)
    alone, _ = step(params=[aapl], last_prices=np.array([100.0]), slot=5, seed=1, interval=0.5)
    crowd = [SimulatorParams(f"X{i}", 0.0, 0.3, 0.0) for i in range(10)] + [aapl]
    together, _ = step(params=crowd, last_prices=np.full(11, 100.0), slot=5, seed=1, interval=0.5)
    assert together[-1] == alone[0]


def test_trade_sizes_are_positive_integers_mostly_round_lots():
    params = [SimulatorParams(f"S{i}", 0.0, 0.3, 0.0) for i in range(2000)]
    _, sizes = step(params=params, last_prices=np.full(2000, 50.0), slot=9, seed=5, interval=0.5)
    assert sizes.dtype.kind == "i"
    assert sizes.min() >= 1
    round_lots = (sizes % 100 == 0).mean()
    assert 0.55 < round_lots < 0.8
    assert 50 <= np.median(sizes) <= 200


def test_slots_follow_the_wall_clock_grid():
    assert slot_of(1_700_000_000.0, 0.5) == 3_400_000_000
    assert slot_of(1_700_000_000.49, 0.5) == 3_400_000_000
    assert slot_of(1_700_000_000.5, 0.5) == 3_400_000_001


def test_anomalies_at_the_default_threshold_are_rare_and_mostly_the_simulators_jumps():
    """At 0.5 s ticks a random walk's own z-score over 20 prices crosses 3.0 about 18 times
    an hour (1.5 a minute across the five default symbols): too often to mean anything. At
    the default threshold an anomaly starts about once an hour per symbol."""
    from apps.indicators.engine import IndicatorEngine
    from apps.market.constants import DEFAULT_ANOMALY_THRESHOLD, DEFAULT_SYMBOLS

    def onsets_per_hour(jumps: bool) -> float:
        params = [
            SimulatorParams(d["ticker"], d["drift"], d["volatility"], d["jump_rate"] * jumps)
            for d in DEFAULT_SYMBOLS
        ]
        tickers = [p.ticker for p in params]
        engine = IndicatorEngine()
        for ticker in tickers:
            engine.add_symbol(ticker, anomaly_threshold=DEFAULT_ANOMALY_THRESHOLD)
        prices = np.array([d["start_price"] for d in DEFAULT_SYMBOLS])
        hours, slots = 6, 6 * 7200
        flags = np.empty((slots, len(params)), dtype=bool)
        for slot in range(slots):
            prices, _ = step(params=params, last_prices=prices, slot=slot, seed=11, interval=0.5)
            flags[slot] = engine.update(tickers, prices)["anomaly"]
        starts = flags[1:] & ~flags[:-1]
        return starts.sum() / hours / len(params)

    with_jumps, noise_only = onsets_per_hour(True), onsets_per_hour(False)
    jumps_per_hour = np.mean([d["jump_rate"] for d in DEFAULT_SYMBOLS]) / 24
    print(f"anomalies/h/symbol: {with_jumps:.2f} ({noise_only:.2f} without jumps)")
    assert 0.2 <= with_jumps <= 2.0  # about one an hour, not 18
    assert with_jumps - noise_only >= 0.3 * jumps_per_hour  # jumps do show as anomalies


def _quotes(prices: np.ndarray, volatility: float, slots: int = 20):
    """Quotes around `prices` for `slots` slots of symbols of one volatility, stacked."""
    params = [SimulatorParams(f"Q{i:04d}", 0.0, volatility, 0.0) for i in range(len(prices))]
    drawn = [quotes(params=params, prices=prices, slot=slot, seed=3) for slot in range(slots)]
    return tuple(np.concatenate([getattr(q, f) for q in drawn]) for f in
                 ("bids", "asks", "bid_sizes", "ask_sizes"))  # fmt: skip


def test_quotes_straddle_the_trade_on_the_price_grid():
    rng = np.random.default_rng(0)
    prices = np.concatenate([rng.uniform(1.0, 900.0, 500), rng.uniform(0.01, 0.99, 500)])
    bids, asks, bid_sizes, ask_sizes = _quotes(prices, 0.3)
    traded = np.tile(prices, 20)
    assert (bids <= traded).all()
    assert (traded <= asks).all()
    assert (bids < asks).all()
    assert (bids > 0).all()
    increment = np.where(traded >= 1.0, 0.01, 0.0001)  # Reg NMS rule 612
    for side in (bids, asks):
        steps = side / increment
        assert np.allclose(steps, np.rint(steps), rtol=0, atol=1e-6)
    for sizes in (bid_sizes, ask_sizes):
        assert set(np.unique(sizes)) == {100 * lots for lots in range(1, 11)}
    # Where a trade sits inside the spread varies: near the bid as often as near the ask.
    position = (traded - bids) / (asks - bids)
    assert 0.4 < (position < 0.5).mean() < 0.6


@pytest.mark.parametrize(("volatility", "median_bps"), [(0.25, 3.0), (0.6, 5.8)])
def test_the_spread_widens_with_volatility_as_documented(volatility, median_bps):
    # docs/contracts.md#quotes: 1 bp + 8 bps per unit of annual volatility, median.
    prices = np.full(1000, 500.0)  # $0.01 is 0.2 bp here: the grid hardly rounds
    bids, asks, _, _ = _quotes(prices, volatility)
    spread_bps = (asks - bids) / 500.0 * 1e4
    assert np.median(spread_bps) == pytest.approx(median_bps, abs=0.25)


def test_a_cheap_stocks_spread_is_one_increment():
    bids, asks, _, _ = _quotes(np.full(200, 3.0), 0.25)  # 3 bps of $3 is a tenth of a cent
    assert np.allclose(asks - bids, 0.01)


def test_same_slot_same_quotes():
    params = [SimulatorParams("AAPL", 0.05, 0.25, 12.0)]
    prices = np.array([190.1234])
    first, again, later = (
        quotes(params=params, prices=prices, slot=slot, seed=1).columns() for slot in (42, 42, 43)
    )
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, later, strict=True))
