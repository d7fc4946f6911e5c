"""Reference values for the engine tests: TA-Lib, and exact rational window statistics.

TA-Lib is the contract (docs/contracts.md#indicators). For the window fields it is not an exact
oracle: its SMA is a running sum, so a series that passed through large prices keeps an
absolute error of about eps * (those prices) in later SMAs, and a z-score derived from it
inherits (that error) / stddev. `exact_window` gives the true values (integer arithmetic on
the exact binary values of the prices, one rounding at the end) to check ours against
everywhere, and to tell where TA-Lib itself is accurate enough to be checked against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import talib

from apps.indicators.engine import FIELDS, ZERO_STD_REL, IndicatorEngine

TOL = 1e-9
WINDOW_FIELDS = ("sma_20", "zscore_20", "bb_upper", "bb_middle", "bb_lower")
BANDS = ("bb_upper", "bb_lower")


def talib_reference(x: np.ndarray, threshold: float = 3.0) -> dict[str, np.ndarray]:
    """Every field as TA-Lib computes it on the price series `x` (NaN where TA-Lib has none).

    zscore_20 = (x - SMA20) / STDDEV20, null where TA-Lib's stddev is 0.
    """
    x = np.asarray(x, dtype=np.float64)
    sma = talib.SMA(x, 20)
    std = talib.STDDEV(x, 20, 1)
    z = np.full_like(x, np.nan)
    ok = std > 0
    z[ok] = (x[ok] - sma[ok]) / std[ok]
    macd, signal, hist = talib.MACD(x, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(x, 20, 2, 2)
    return {
        "sma_20": sma,
        "ema_20": talib.EMA(x, 20),
        "rsi_14": talib.RSI(x, 14),
        "zscore_20": z,
        "anomaly": np.abs(np.nan_to_num(z)) >= threshold,
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
    }


def exact_window(x: Sequence[float], threshold: float = 3.0) -> dict[str, np.ndarray]:
    """Exact sma_20, population stddev, zscore_20, Bollinger bands and anomaly.

    Every price is an integer multiple of 2**-K for one K, so sliding sums of those integers
    (and of their squares) are exact; each value is rounded once at the end (the bands and
    the stddev twice). zscore_20 follows the engine's rule: null when the exact stddev is
    <= ZERO_STD_REL * |exact mean|. Also returns "ratio" = stddev / mean, to skip the points
    where that rule is a coin toss.
    """
    ratios = [float(v).as_integer_ratio() for v in x]
    scale = max(q for _, q in ratios)  # a power of two
    ints = [p * (scale // q) for p, q in ratios]
    n = len(ints)
    names = (
        "sma_20",
        "std",
        "zscore_20",
        "bb_upper",
        "bb_middle",
        "bb_lower",
        "ratio",
        "band_scale",
    )
    out = {name: np.full(n, np.nan) for name in names}
    anomaly = np.zeros(n, dtype=bool)
    total = sum(ints[:19])
    squares = sum(v * v for v in ints[:19])
    for i in range(19, n):
        total += ints[i]
        squares += ints[i] * ints[i]
        disc = 20 * squares - total * total  # (20 * scale)**2 * variance
        sma = total / (20 * scale)
        std = math.sqrt(disc / (400 * scale * scale))
        out["sma_20"][i] = out["bb_middle"][i] = sma
        out["std"][i] = std
        out["bb_upper"][i] = sma + 2 * std
        out["bb_lower"][i] = sma - 2 * std
        out["band_scale"][i] = abs(sma) + 2 * std
        out["ratio"][i] = std / abs(sma)
        if std > ZERO_STD_REL * abs(sma):
            num = 20 * ints[i] - total  # (20 * scale) * (x - mean)
            z = math.copysign(math.sqrt(num * num / disc), num)
            out["zscore_20"][i] = z
            anomaly[i] = abs(z) >= threshold
        total -= ints[i - 19]
        squares -= ints[i - 19] * ints[i - 19]
    out["anomaly"] = anomaly
    return out


def run(engine: IndicatorEngine, symbols: list[str], prices: np.ndarray) -> dict[str, np.ndarray]:
    """Feed prices[t] (one per symbol) as batch t; results as field -> (T, len(symbols))."""
    steps, width = prices.shape
    result = {
        f: np.empty((steps, width), dtype=bool if f == "anomaly" else np.float64) for f in FIELDS
    }
    for t in range(steps):
        values = engine.update(symbols, prices[t])
        for f in FIELDS:
            result[f][t] = values[f]
    return result


def run_single(prices: Sequence[float], threshold: float = 3.0) -> dict[str, np.ndarray]:
    """One symbol through a fresh engine, one price per batch."""
    engine = IndicatorEngine()
    engine.add_symbol("X", threshold)
    res = run(engine, ["X"], np.asarray(prices, dtype=np.float64)[:, None])
    return {f: v[:, 0] for f, v in res.items()}


def mismatch(
    ours: np.ndarray,
    ref: np.ndarray,
    mask: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> str | None:
    """None if `ours` equals `ref` where `mask` (default everywhere): same null positions and
    |ours - ref| <= TOL * max(1, |ref|, `scale`). Otherwise a description of the first
    difference."""
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    if mask is None:
        mask = np.ones(ours.shape, dtype=bool)
    if ours.dtype == bool or ref.dtype == bool:
        bad = mask & (ours != ref)
    else:
        nan_o, nan_r = np.isnan(ours), np.isnan(ref)
        with np.errstate(invalid="ignore"):
            allowed = np.maximum(1.0, np.abs(ref))
            if scale is not None:
                allowed = np.fmax(allowed, scale)
            err = np.abs(ours - ref) - TOL * allowed
        bad = mask & ((nan_o != nan_r) | (~nan_o & ~nan_r & (err > 0)))
    if not bad.any():
        return None
    i = np.flatnonzero(bad.ravel())[0]
    idx = np.unravel_index(i, ours.shape)
    return f"{int(bad.sum())} mismatches, first at {idx}: ours={ours[idx]!r} ref={ref[idx]!r}"


def exact_mismatch(
    ours: np.ndarray, exact: dict[str, np.ndarray], field: str, mask: np.ndarray | None = None
) -> str | None:
    """`mismatch` against `exact_window`'s `field`, a Bollinger band held to 1e-9 of what it
    is made of (|sma| + 2 stddev), every other field to 1e-9 of its own value.

    A band is a subtraction: where it nears zero (a stddev half the mean), it keeps fewer
    correct digits than 1e-9 of its own value in any double-precision computation, the exact
    reference's own final rounding of sma - 2 * std included. Its parts are held to 1e-9.
    """
    scale = exact["band_scale"] if field in BANDS else None
    return mismatch(ours, exact[field], mask, scale)


def talib_reliable(x: np.ndarray, ref: dict[str, np.ndarray], exact: dict[str, np.ndarray]):
    """Where TA-Lib's window fields are themselves within TOL / 10 of the exact values (so a
    1e-9 comparison with them is meaningful), and the zero-stddev rule is not borderline."""
    ok = np.ones(len(x), dtype=bool)
    with np.errstate(invalid="ignore"):
        for field in ("sma_20", "bb_upper", "bb_lower"):
            err = np.abs(ref[field] - exact[field]) / np.maximum(1.0, np.abs(exact[field]))
            ok &= ~(err > TOL / 10)
        ref_z, exact_z = ref["zscore_20"], exact["zscore_20"]
        z_err = np.abs(ref_z - exact_z) / np.maximum(1.0, np.abs(exact_z))
        ok &= ~(z_err > TOL / 10) & (np.isnan(ref_z) == np.isnan(exact_z))
    return ok & not_borderline(exact)


def not_borderline(exact: dict[str, np.ndarray]) -> np.ndarray:
    """False where the exact stddev / mean is within a factor 2 of ZERO_STD_REL: there the
    engine and any float reference may legitimately disagree on null vs a value."""
    ratio = exact["ratio"]
    with np.errstate(invalid="ignore"):
        return ~((ratio > ZERO_STD_REL / 2) & (ratio < ZERO_STD_REL * 2))
