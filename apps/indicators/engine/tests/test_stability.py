"""Numerical stability over 100,000 ticks: the sliding window update does not drift, at
ordinary, huge and tiny price levels and across jumps between them."""

from __future__ import annotations

import numpy as np

from apps.indicators.engine import IndicatorEngine

from .reference import (
    TOL,
    WINDOW_FIELDS,
    exact_mismatch,
    exact_window,
    mismatch,
    run,
    talib_reference,
)

TICKS = 100_000


def long_series() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    steps = rng.normal(0.0, 1.0, (TICKS, 4))
    regimes = np.repeat(rng.choice([1e-4, 1.0, 1e6], 10), TICKS // 10)  # a jump every 10k
    return {
        "ordinary": 100 * np.exp(np.cumsum(0.01 * steps[:, 0])),
        "huge_quiet": 1e6 * np.exp(np.cumsum(1e-5 * steps[:, 1])),  # mean/stddev ~ 1e5
        "tiny": 1e-4 * np.exp(np.cumsum(0.003 * steps[:, 2])),
        "jumping": regimes * np.exp(np.cumsum(0.002 * steps[:, 3])),
    }


def test_100k_ticks_window_fields_stay_exact_and_equal_talib_at_the_end():
    series = long_series()
    names = list(series)
    engine = IndicatorEngine()
    res = run(engine, names, np.column_stack([series[n] for n in names]))
    for j, name in enumerate(names):
        x = series[name]
        exact = exact_window(x)
        for field in (*WINDOW_FIELDS, "anomaly"):  # every tick, against exact values
            assert exact_mismatch(res[field][:, j], exact, field) is None, (name, field)
        ref = talib_reference(x)
        end = slice(TICKS - 200, TICKS)
        for field in ("sma_20", "zscore_20", "bb_upper", "bb_lower", "ema_20", "rsi_14", "macd"):
            if name == "jumping" and field in ("sma_20", "zscore_20", "bb_upper", "bb_lower"):
                # TA-Lib's running sum still carries eps * 1e6 from the huge regime; compare
                # with TA-Lib run on the last stretch alone (the window fields only look
                # back 20 ticks), which is TA-Lib's own exact answer.
                tail = talib_reference(x[-400:])
                assert mismatch(res[field][-200:, j], tail[field][-200:]) is None, (name, field)
                continue
            assert mismatch(res[field][end, j], ref[field][end]) is None, (name, field)


def test_a_naive_running_sum_would_have_drifted():
    """The check above has teeth: plain running sums of x and x**2 miss by far more than
    1e-9 on the quiet huge series (what the engine's design avoids)."""
    x = long_series()["huge_quiet"][:20_000]
    s1 = np.cumsum(x)
    s2 = np.cumsum(x * x)
    s1w = s1[19:] - np.r_[0.0, s1[:-20]]
    s2w = s2[19:] - np.r_[0.0, s2[:-20]]
    with np.errstate(invalid="ignore"):
        naive_std = np.sqrt(np.maximum(s2w / 20 - (s1w / 20) ** 2, 0))
    exact = exact_window(x)["std"][19:]
    assert np.nanmax(np.abs(naive_std - exact) / exact) > 1e3 * TOL
