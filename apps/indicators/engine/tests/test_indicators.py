"""Every field equals TA-Lib on the same series at every tick, null exactly where TA-Lib has
no value; the window fields also equal the exact values (reference.py explains why both)."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.indicators.engine import FIELDS, WARMUP, IndicatorEngine

from .reference import (
    WINDOW_FIELDS,
    exact_mismatch,
    exact_window,
    mismatch,
    not_borderline,
    run,
    run_single,
    talib_reference,
    talib_reliable,
)

RECURSIVE_FIELDS = ("ema_20", "rsi_14", "macd", "macd_signal", "macd_hist")


def gbm(seed: int, n: int, start: float = 100.0, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0.0, vol, n)))


@pytest.mark.parametrize(
    ("seed", "start", "vol"),
    [(0, 100.0, 0.01), (1, 100.0, 0.002), (2, 1e-4, 0.01), (3, 1e6, 0.001), (4, 37.5, 0.05)],
)
def test_gbm_series_equals_talib_at_every_tick(seed, start, vol):
    x = gbm(seed, 4000, start, vol)
    ref = talib_reference(x)
    single = run_single(x)  # the scalar kernel
    wide = run(IndicatorEngine(), [f"C{i}" for i in range(8)], np.column_stack([x] * 8))
    for field in FIELDS:
        assert mismatch(single[field], ref[field]) is None, field
        assert mismatch(wide[field][:, 7], ref[field]) is None, field  # the numpy kernel


@pytest.mark.parametrize(("seed", "start", "vol"), [(5, 100.0, 0.01), (6, 1e6, 1e-7)])
def test_window_fields_equal_the_exact_values(seed, start, vol):
    x = gbm(seed, 3000, start, vol)
    ours = run_single(x)
    exact = exact_window(x)
    for field in (*WINDOW_FIELDS, "anomaly"):
        assert exact_mismatch(ours[field], exact, field) is None, field


def test_nulls_are_exactly_where_talib_has_no_value():
    x = gbm(7, 80)
    ours = run_single(x)
    ref = talib_reference(x)
    for field in FIELDS:
        if field == "anomaly":
            continue
        assert np.array_equal(np.isnan(ours[field]), np.isnan(ref[field])), field
        # WARMUP[field] prices are needed: the first value is at index WARMUP - 1
        assert int(np.flatnonzero(~np.isnan(ours[field]))[0]) == WARMUP[field] - 1, field
    assert not ours["anomaly"][: WARMUP["anomaly"] - 1].any()


def test_macd_is_talibs_jointly_seeded_macd_not_two_independent_emas():
    x = gbm(8, 300, vol=0.03)
    ours = run_single(x)
    independent = talib.EMA(x, 12) - talib.EMA(x, 26)
    assert mismatch(ours["macd"], talib.MACD(x, 12, 26, 9)[0]) is None
    assert np.nanmax(np.abs(ours["macd"] - independent)) > 1e-3


def test_flat_series_has_null_zscore_collapsed_bands_and_zero_rsi():
    x = np.full(60, 123.456)
    ours = run_single(x)
    ref = talib_reference(x)
    assert np.isnan(ours["zscore_20"]).all()
    assert not ours["anomaly"].any()
    assert np.array_equal(ours["bb_upper"][19:], x[19:])
    assert np.array_equal(ours["bb_lower"][19:], x[19:])
    assert np.array_equal(ours["rsi_14"][14:], np.zeros(46))
    for field in FIELDS:
        assert mismatch(ours[field], ref[field]) is None, field


def test_zscore_is_null_for_ulp_noise_but_not_for_a_one_tick_move_on_tiny_prices():
    flat = np.full(40, 1.0)
    flat[25] = np.nextafter(1.0, 2.0)  # float noise: stddev ~ 1e-17 of the price
    assert np.isnan(run_single(flat)["zscore_20"][25:]).all()

    tiny = np.full(40, 1e-4)
    tiny[30] = 1e-4 + 1e-10  # a real move of one part in a million on a tiny price
    z = run_single(tiny)["zscore_20"]
    assert np.isnan(z[:30]).all()
    assert z[30] == pytest.approx(np.sqrt(19.0), rel=1e-9)  # one outlier among 20
    exact = exact_window(tiny)
    assert mismatch(z, exact["zscore_20"]) is None


def test_anomaly_uses_each_symbols_threshold_inclusively():
    x = np.r_[gbm(9, 40, vol=0.001), 130.0]  # a jump at the end: |z| ~ 4.3
    z_jump = run_single(x)["zscore_20"][-1]
    assert z_jump > 4.0
    engine = IndicatorEngine()
    thresholds = {
        "LOW": 2.0,
        "EQUAL": float(z_jump),
        "ABOVE": float(np.nextafter(z_jump, 9)),
        "HIGH": 10.0,
    }
    for symbol, threshold in thresholds.items():
        engine.add_symbol(symbol, threshold)
    res = run(engine, list(thresholds), np.column_stack([x] * 4))
    assert np.array_equal(res["zscore_20"][-1], np.full(4, z_jump))
    assert res["anomaly"][-1].tolist() == [True, True, False, False]
    assert mismatch(res["anomaly"][:, 0], exact_window(x, threshold=2.0)["anomaly"]) is None
    assert not res["anomaly"][:-1, 1:].any()


@st.composite
def price_series(draw) -> np.ndarray:
    """GBM stretches of very different volatility, flat runs (also with ulp noise) and
    single jumps, at tiny, ordinary or huge price levels."""
    scale = draw(st.sampled_from([1e-4, 0.37, 100.0, 1e6]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    level = 1.0
    out: list[np.ndarray] = []
    total = 0
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["gbm", "flat", "ulp", "jump"]))
        length = draw(st.integers(1, 400))
        if kind == "gbm":
            vol = draw(st.sampled_from([1e-9, 1e-6, 1e-3, 0.02, 0.2]))
            piece = level * np.exp(np.cumsum(rng.normal(0.0, vol, length)))
        elif kind == "flat":
            piece = np.full(length, level)
        elif kind == "ulp":  # flat, but with float noise of a few ulps
            piece = np.array([_ulps(level, int(k)) for k in rng.integers(-2, 3, length)])
        else:
            factor = draw(st.sampled_from([1e-3, 0.5, 1 + 1e-12, 1.7, 1e3]))
            piece = np.array([level * factor])
        piece = np.clip(piece, 1e-3, 1e3)
        level = float(piece[-1])
        out.append(piece)
        total += len(piece)
        if total > 2500:
            break
    return np.concatenate(out)[:2500] * scale


def _ulps(value: float, k: int) -> float:
    for _ in range(abs(k)):
        value = float(np.nextafter(value, np.inf if k > 0 else 0.0))
    return value


@given(price_series())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_series_equal_talib_and_exact_values(x):
    ours = run_single(x)  # a one-symbol engine runs the scalar kernel ...
    engine = IndicatorEngine()
    wide = run(engine, [f"C{i}" for i in range(8)], np.repeat(x[:, None], 8, axis=1))
    for field in FIELDS:  # ... and a wider one the numpy kernel: the same bits
        same = np.array_equal(wide[field][:, 5], ours[field], equal_nan=field != "anomaly")
        assert same, field
    ref = talib_reference(x)
    exact = exact_window(x)
    for field in RECURSIVE_FIELDS:
        assert mismatch(ours[field], ref[field]) is None, field
    clear = not_borderline(exact)
    for field in WINDOW_FIELDS:
        assert exact_mismatch(ours[field], exact, field, clear) is None, field
    # TA-Lib's window values carry its own running-sum error after big prices; wherever that
    # error is below 1e-10 it is a valid 1e-9 reference too.
    reliable = talib_reliable(x, ref, exact)
    for field in WINDOW_FIELDS:
        assert mismatch(ours[field], ref[field], reliable) is None, field
    z = np.abs(np.nan_to_num(exact["zscore_20"]))
    decided = clear & (np.abs(z - 3.0) > 1e-9)
    assert mismatch(ours["anomaly"], exact["anomaly"], decided) is None
