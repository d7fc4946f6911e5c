"""The per-tick arithmetic, shared by the fast path and the general path of the engine.

One call advances k distinct symbols by one price each. Every operation is an elementwise
numpy ufunc (or an axis-0 reduction of a C-contiguous (20, k) block), so the bits computed
for a symbol depend only on that symbol's own state and price: the same in a batch of one or
of 10,000, whichever path ran it. The engine's serialisation guarantees rely on this.

Float state block, one column per symbol (steady-state meaning; warm-up in core.py):

===== ==========================================================================
row   meaning
===== ==========================================================================
0     anchor a: the price at the last exact window recompute (window mean = a + md)
1-3   EMA20, EMA12 (MACD fast), EMA26 (MACD slow)
4-5   RSI, Wilder: g = 2 * average gain, s = average |move| (EMAs with alpha 1/14)
6-7   md, M2: window mean minus the anchor, and the (population) variance of the last 20
      prices, i.e. their sum of squared deviations from the mean / 20 (named M2 for history)
8     M2max: the largest M2 since the last exact recompute
9     MACD signal (EMA9 of MACD)
10    anomaly threshold
===== ==========================================================================

Performance: at 1,000 symbols numpy's per-call overhead (about 1 us here) costs more than
the arithmetic, so the kernel is written to make few calls: outputs are passed positionally,
constants are 0-d arrays, and rows that take the same operation are laid out next to each
other. All five EMA-type recursions (EMA20, EMA12, EMA26 and Wilder's two RSI averages) are
rows of one block updated as S += A * (X - S) with a per-row factor: X - [anchor, 3 EMAs, g, s]
is one call (input rows x, x, x, x, d + |d|, |d|), so is the multiply by the 5 factors and
1/20, and so is the add that moves the 5 averages, the window mean and M2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .constants import (
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    RECOMPUTE_DROP,
    RSI_PERIOD,
    WINDOW,
    ZERO_STD_REL,
)

try:  # the C function itself; np.count_nonzero adds a Python dispatch layer (~0.7 us)
    from numpy._core.multiarray import count_nonzero as count_true
except ImportError:  # pragma: no cover - other numpy layouts
    count_true = np.count_nonzero

# Rows of the float state block.
ANC, E0, E1, E2, G, S, MD, M2, M2MAX, SIG, THR = range(11)
NSTATE = 11

# Rows of the output block, in the order of constants.FLOAT_FIELDS.
O_SMA, O_EMA, O_RSI, O_Z, O_MACD, O_SIG, O_HIST, O_BBU, O_BBM, O_BBL = range(10)
NOUT = 10

# Smoothing factors as TA-Lib's PER_TO_K, Wilder's 1/14 (twice: gain and |move|), and 1/20
# for the change of the window mean.
FACTORS = (
    2.0 / (WINDOW + 1),
    2.0 / (MACD_FAST + 1),
    2.0 / (MACD_SLOW + 1),
    1.0 / RSI_PERIOD,
    1.0 / RSI_PERIOD,
    1.0 / WINDOW,
)
# Constants as 0-d arrays: a ufunc takes them faster than Python floats.
# signal = EMA9 of MACD: sig' = sig + (macd - sig) k, so hist = macd - sig' = (macd - sig)(1 - k)
_C_HIST = np.array(1.0 - 2.0 / (MACD_SIGNAL + 1))
_C50 = np.array(50.0)
_C_DROP = np.array(RECOMPUTE_DROP)
_C_ZREL = np.array(ZERO_STD_REL)
_ZERO = np.array(0.0)

Recompute = Callable[[np.ndarray | None], None]
"""Recomputes the window statistics exactly for the given local rows (None: all rows)."""


class Views(NamedTuple):
    """Row views of a (11, k) state block and of the scratch arrays of kernel calls, made
    once (creating a numpy view costs about 0.5 us, as much as a small ufunc call)."""

    st: np.ndarray
    xs: np.ndarray  # (6, k) x, x, x, x, d + |d|, |d|: inputs of anchor, 3 EMAs, g, s
    xs4: np.ndarray  # xs[0:4]: x broadcast into these rows
    xs6: np.ndarray  # xs
    xs2: np.ndarray  # xs[0:2]: x, x (against the oldest and the previous price)
    gin: np.ndarray  # xs[4]: d + |d|
    sin: np.ndarray  # xs[5]: |d|
    st6: np.ndarray  # anchor, EMA20, EMA12, EMA26, g, s
    w: np.ndarray  # (8, k) xs6 - st6, dl, d
    w6: np.ndarray  # w[0:6]
    w16: np.ndarray  # w[1:7]
    w2: np.ndarray  # w[6:8]: x - oldest price (dl), x - previous price (d)
    xa: np.ndarray
    dl: np.ndarray
    d: np.ndarray
    p: np.ndarray  # (7, k) increments of EMA20, EMA12, EMA26, g, s, md, M2
    p6: np.ndarray
    p_md: np.ndarray
    p_m2: np.ndarray
    k6: np.ndarray  # (6, k) FACTORS
    moving: np.ndarray  # st[E0 : M2 + 1]
    anc: np.ndarray
    e0: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    md: np.ndarray
    m2: np.ndarray
    g: np.ndarray
    s: np.ndarray
    m2max: np.ndarray
    sig: np.ndarray
    thr: np.ndarray
    e: np.ndarray
    u: np.ndarray
    v: np.ndarray
    t1: np.ndarray
    std: np.ndarray
    bm: np.ndarray


def views(st: np.ndarray) -> Views:
    """Views and scratch arrays for kernel() over the C-contiguous (11, k) state block."""
    k = st.shape[1]
    k6 = np.empty((6, k))
    for row, value in enumerate(FACTORS):
        k6[row] = value
    xs = np.empty((6, k))
    w = np.empty((8, k))
    p = np.empty((7, k))
    f = np.empty((5, k))
    return Views(
        st,
        xs,
        xs[0:4],
        xs,
        xs[0:2],
        xs[4],
        xs[5],
        st[0:6],
        w,
        w[0:6],
        w[1:7],
        w[6:8],
        w[0],
        w[6],
        w[7],
        p,
        p[0:6],
        p[5],
        p[6],
        k6,
        st[E0 : M2 + 1],
        st[ANC],
        st[E0],
        st[E1],
        st[E2],
        st[MD],
        st[M2],
        st[G],
        st[S],
        st[M2MAX],
        st[SIG],
        st[THR],
        *f,
        np.empty(k, dtype=bool),
    )


_sub, _add, _mul, _div = np.subtract, np.add, np.multiply, np.divide
_abs, _max, _less, _sqrt = np.absolute, np.maximum, np.less, np.sqrt


def kernel(
    v: Views,
    out: tuple[np.ndarray, ...],
    anomaly: np.ndarray,
    recompute: Recompute,
    forced: np.ndarray | bool | None,
    rsi_guard: bool,
) -> bool:
    """Advance k symbols in steady state by one price each, in place.

    Expects v.xs4 = x and v.w2 = [x - price leaving the 20-window, x - previous price] (the
    caller has written x into the ring buffer); rows 4-5 of v.xs are scratch. Writes the 10
    output rows `out` (order of FLOAT_FIELDS) and the anomaly flags. forced: rows whose
    window statistics must be recomputed exactly this tick (True: all). rsi_guard: some
    symbol may never have moved (RSI denominator 0). Returns that flag for the next tick.
    """
    sub, add, mul, div = _sub, _add, _mul, _div
    (
        _st, _xs, _xs4, xs6, _xs2, gin, sin, st6, _w, w6, w16, _w2, xa, dl, d, p, p6, p_md,
        p_m2, k6, moving, anc, e0, e1, e2, md, m2, g, s, m2max, sig, thr, e, u, wv, t1, std, bm,
    ) = v  # fmt: skip
    o_sma, o_ema, o_rsi, o_z, o_macd, o_sig, o_hist, o_bbu, o_bbm, o_bbl = out

    # RSI, Wilder: avg += (move - avg) / 14, kept as g = 2 * average gain (2 max(d, 0) =
    # d + |d| exactly) and s = average |move|; RSI = 100 gain / (gain + loss) = 50 g / s.
    _abs(d, sin)
    add(d, sin, gin)
    sub(xs6, st6, w6)  # x - anchor, x - EMA20, x - EMA12, x - EMA26, d + |d| - g, |d| - s
    mul(w16, k6, p6)  # EMA steps (x - prev) * k as TA-Lib; Wilder steps; mean change dl / 20

    # Window of 20: sliding Welford update, the mean kept relative to the anchor so that
    # x - mean is computed from small numbers (accurate z-scores at any price level).
    sub(xa, md, e)  # x - old mean
    sub(e, p_md, u)  # x - new mean: the z-score numerator
    sub(e, dl, wv)  # leaving price - old mean
    add(u, wv, wv)
    mul(p_md, wv, p_m2)  # change of M2 (the variance: dl / 20 * ...)
    add(moving, p, moving)  # EMAs, RSI averages, md and M2 move together
    _max(m2max, m2, out=m2max)
    mul(m2, _C_DROP, t1)
    _less(t1, m2max, bm)  # M2 dropped (or went negative): recompute exactly
    if forced is True:
        recompute(None)
    else:
        if forced is not None:
            np.logical_or(bm, forced, bm)
        if count_true(bm):
            recompute(np.flatnonzero(bm))

    o_ema[...] = e0
    # MACD = EMA12 - EMA26 (TA-Lib's joint seeding is done in warm-up); signal = EMA9 of MACD
    sub(e1, e2, o_macd)
    sub(o_macd, sig, t1)
    mul(t1, _C_HIST, o_hist)  # hist = (macd - old signal) (1 - k)
    sub(o_macd, o_hist, sig)  # new signal = macd - hist
    o_sig[...] = sig

    if rsi_guard:
        # s == 0 only for a symbol that never moved; then g == 0 and RSI is 0 (as TA-Lib).
        np.equal(s, _ZERO, bm)
        rsi_guard = bool(count_true(bm))
        if rsi_guard:
            add(s, bm, t1)
            div(g, t1, o_rsi)
        else:
            div(g, s, o_rsi)
    else:
        div(g, s, o_rsi)
    mul(o_rsi, _C50, o_rsi)

    add(anc, md, o_sma)
    o_bbm[...] = o_sma
    _sqrt(m2, std)  # population stddev (M2 >= 0 after the recompute above)
    add(std, std, t1)
    add(o_sma, t1, o_bbu)
    sub(o_sma, t1, o_bbl)
    mul(o_sma, _C_ZREL, t1)
    np.less_equal(std, t1, bm)
    if count_true(bm):  # stddev ~ 0: z-score is null
        t1[...] = std
        t1[bm] = np.nan
        div(u, t1, o_z)
    else:
        div(u, std, o_z)
    _abs(o_z, t1)
    np.greater_equal(t1, thr, anomaly)  # NaN compares False
    return rsi_guard


def window_stats(chron: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact (two-pass, centred on x) md = mean - x and M2 (the population variance) of each
    column of a C-contiguous (20, k) block of prices in chronological order; consumes `chron`.

    Reducing over axis 0 adds the rows one after the other, elementwise, so each column's
    bits do not depend on k; a single column would be summed pairwise instead (numpy sees a
    contiguous vector), so k == 1 is padded to two columns.
    """
    if chron.shape[1] == 1:
        md, m2 = window_stats(np.concatenate([chron, chron], axis=1), np.concatenate([x, x]))
        return md[:1], m2[:1]
    np.subtract(chron, x, chron)
    md = np.add.reduce(chron, axis=0)
    np.divide(md, WINDOW, md)
    np.subtract(chron, md, chron)
    np.multiply(chron, chron, chron)
    m2 = np.add.reduce(chron, axis=0)
    np.divide(m2, WINDOW, m2)
    return md, m2


# Python floats for the scalar kernel: the same IEEE doubles as the 0-d arrays above.
_K_EMA20, _K_FAST, _K_SLOW, _K_RSI, _, _K_MEAN = FACTORS
_F_HIST = float(_C_HIST)
_F_DROP = float(_C_DROP)
_F_ZREL = float(_C_ZREL)
_F50 = float(_C50)
_NAN = float("nan")


def kernel_scalar(
    col: list[float], x: float, old: float, prev: float, forced: bool
) -> tuple[list[float], bool]:
    """`kernel` for one symbol with Python floats: the same operations in the same order, so
    the same bits (numpy's elementwise ufuncs and Python floats are both IEEE-754 doubles
    rounded to nearest, and sqrt is correctly rounded in both). Used for engines of a few
    symbols, where numpy's per-call overhead would dominate.

    col: the symbol's 11 state values (rows above), updated in place. Returns the 10 output
    values (FLOAT_FIELDS order; the window ones are completed by `finish_scalar`) and whether
    the window statistics need an exact recompute first (then the caller recomputes, updates
    col and sets out[O_Z] = x - mean = -md).
    """
    anc, e0, e1, e2, g, s, md, m2, m2max, sig, _thr = col
    d = x - prev
    ad = abs(d)
    dl = x - old
    p3 = dl * _K_MEAN
    e = (x - anc) - md
    u = e - p3
    p4 = p3 * (u + (e - dl))
    e0 = e0 + (x - e0) * _K_EMA20
    e1 = e1 + (x - e1) * _K_FAST
    e2 = e2 + (x - e2) * _K_SLOW
    g = g + ((d + ad) - g) * _K_RSI
    s = s + (ad - s) * _K_RSI
    md = md + p3
    m2 = m2 + p4
    if m2 > m2max:
        m2max = m2
    macd = e1 - e2
    hist = (macd - sig) * _F_HIST
    sig = macd - hist
    rsi = (g / s if s != 0.0 else g / (s + 1.0)) * _F50
    col[1:10] = e0, e1, e2, g, s, md, m2, m2max, sig
    out = [_NAN, e0, rsi, u, macd, sig, hist, _NAN, _NAN, _NAN]
    return out, forced or m2 * _F_DROP < m2max


def finish_scalar(col: list[float], out: list[float]) -> bool:
    """Window outputs of `kernel_scalar` once the window state in `col` is final (out[O_Z]
    holds x - mean on entry). Returns the anomaly flag."""
    sma = col[ANC] + col[MD]
    std = math.sqrt(col[M2])
    two = std + std
    z = _NAN if std <= sma * _F_ZREL else out[O_Z] / std
    out[O_SMA] = sma
    out[O_BBM] = sma
    out[O_BBU] = sma + two
    out[O_BBL] = sma - two
    out[O_Z] = z
    return abs(z) >= col[THR]
