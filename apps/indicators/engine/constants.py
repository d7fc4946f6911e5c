"""Indicator parameters and numerical limits of the engine (docs/contracts.md#indicators).

Everything here is part of the engine's contract: changing a value changes indicator output
and, for the numerical limits, which prices are accepted.
"""

from __future__ import annotations

from typing import Final

FIELDS: Final[tuple[str, ...]] = (
    "sma_20",
    "ema_20",
    "rsi_14",
    "zscore_20",
    "anomaly",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
)
"""The output fields, in the order of docs/contracts.md#indicators."""

FLOAT_FIELDS: Final[tuple[str, ...]] = tuple(f for f in FIELDS if f != "anomaly")
"""The float-valued fields (``anomaly`` is boolean)."""

WINDOW: Final = 20
"""SMA, EMA, z-score and Bollinger period."""
RSI_PERIOD: Final = 14
MACD_FAST: Final = 12
MACD_SLOW: Final = 26
MACD_SIGNAL: Final = 9
BB_NBDEV: Final = 2.0

WARMUP: Final[dict[str, int]] = {
    "sma_20": WINDOW,
    "ema_20": WINDOW,
    "rsi_14": RSI_PERIOD + 1,
    "zscore_20": WINDOW,
    "anomaly": WINDOW,
    "macd": MACD_SLOW + MACD_SIGNAL - 1,
    "macd_signal": MACD_SLOW + MACD_SIGNAL - 1,
    "macd_hist": MACD_SLOW + MACD_SIGNAL - 1,
    "bb_upper": WINDOW,
    "bb_middle": WINDOW,
    "bb_lower": WINDOW,
}
"""Number of prices a symbol needs before the field has a value (TA-Lib lookback + 1)."""

STEADY_AFTER: Final = MACD_SLOW + MACD_SIGNAL - 1
"""After this many prices every indicator runs its steady-state recursion (the fast path)."""

DEFAULT_THRESHOLD: Final = 3.0
"""Default anomaly threshold on abs(zscore_20)."""

ZERO_STD_REL: Final = 1e-12
"""zscore_20 is null when the population stddev is <= ZERO_STD_REL * |sma_20|.

A window of identical prices has stddev exactly 0. Prices that differ only by a few ulps
(float noise from upstream arithmetic) give a stddev around 1e-16 * price, and a z-score of
such noise is meaningless, so anything below one part in 1e12 of the price level counts as
zero. Real quotes move by at least a tick (1e-8 of the price for the finest crypto ticks).
"""

PRICE_MIN: Final = 1e-100
PRICE_MAX: Final = 1e100
"""Accepted price range. Squared deviations must neither overflow nor underflow, which
bounds prices well inside float64; no traded instrument is quoted outside this range."""

RECOMPUTE_PERIOD: Final = 128
"""Each symbol's window statistics are recomputed exactly from its 20 prices at least every
RECOMPUTE_PERIOD ticks, which bounds the rounding drift of the sliding update."""

RECOMPUTE_DROP: Final = 1e3
"""... and as soon as its sum of squared deviations falls below 1/RECOMPUTE_DROP of the
largest value it had since the last exact recompute (a jump leaving the window, a flat run).
Together: relative error of the variance <= 3 * eps * PERIOD * DROP ~ 4e-11."""
