"""The gateway's technical indicators over a series of bars, in plain numpy
(docs/polygon.md#indicators): SMA, EMA, RSI and MACD with TA-Lib's definitions, seeding
and warm-up, so that values equal TA-Lib's on the same bars within 1e-9.

The engine in `apps/indicators/engine` advances fixed periods (20, 14, 12/26/9) one tick at a
time; here any window is asked for over a whole series at once, so these are separate
functions. Each returns arrays as long as its input, NaN where TA-Lib has no value yet.

EMA-type values depend on every earlier bar, fading geometrically: `warmup` says how many
bars before the first value asked for make the part that comes from earlier bars smaller
than `FADE` (relative), so a value computed from those bars equals TA-Lib's computed over
the whole history to far better than 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FADE = 1e-14  # weight left on bars before the warm-up: far below 1e-9 on any price
_ZERO = 1e-8  # TA-Lib's TA_IS_ZERO: an RSI whose average moves add up to less is 0


def _faded(alpha: float) -> int:
    """Steps after which a seed's weight (1 - alpha)^n is below FADE."""
    return math.ceil(math.log(FADE) / math.log1p(-alpha))


def warmup(kind: str, windows: tuple[int, ...]) -> int:
    """Bars needed before the first value asked for (see the module's docstring)."""
    if kind == "sma":
        return windows[0] - 1
    if kind == "ema":
        return windows[0] - 1 + _faded(2.0 / (windows[0] + 1))
    if kind == "rsi":
        return windows[0] + _faded(1.0 / windows[0])
    _, long, signal = windows
    return long + signal - 2 + _faded(2.0 / (long + 1)) + _faded(2.0 / (signal + 1))


def sma(x: np.ndarray, window: int) -> np.ndarray:
    """TA-Lib's SMA; each window summed on its own (TA-Lib keeps a running sum, equal to
    rounding)."""
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        out[window - 1 :] = sliding_window_view(x, window).sum(axis=1) / window
    return out


def _ema_from(x: list[float], seed_at: int, window: int, out: np.ndarray) -> None:
    """TA-Lib's EMA loop: the mean of the `window` values ending at `seed_at`, then
    prev + k * (x - prev), written to out[seed_at:]."""
    k = 2.0 / (window + 1)
    prev = sum(x[seed_at - window + 1 : seed_at + 1]) / window  # summed in order, as TA-Lib
    out[seed_at] = prev
    for i in range(seed_at + 1, len(x)):
        prev = (x[i] - prev) * k + prev
        out[i] = prev


def ema(x: np.ndarray, window: int) -> np.ndarray:
    """TA-Lib's EMA: seeded with the SMA of the first `window` values."""
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        _ema_from(x.tolist(), window - 1, window, out)
    return out


def rsi(x: np.ndarray, window: int) -> np.ndarray:
    """TA-Lib's RSI (Wilder's smoothing): first value at index `window`."""
    out = np.full(len(x), np.nan)
    if len(x) <= window:
        return out
    moves = np.diff(x).tolist()
    gain = sum(m for m in moves[:window] if m > 0)
    loss = sum(-m for m in moves[:window] if m < 0)
    gain, loss = gain / window, loss / window
    for i in range(window, len(x)):
        if i > window:
            move = moves[i - 1]
            gain, loss = gain * (window - 1), loss * (window - 1)
            if move < 0:
                loss -= move
            else:
                gain += move
            gain, loss = gain / window, loss / window
        total = gain + loss
        out[i] = 100.0 * (gain / total) if not -_ZERO < total < _ZERO else 0.0
    return out


def macd(
    x: np.ndarray, short: int, long: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib's MACD: both EMAs start at index long - 1 (the short one seeded with the mean
    of its last `short` values there, not at index short - 1), the signal is the EMA of the
    MACD line; all three from index long + signal - 2."""
    n = len(x)
    line, sig = np.full(n, np.nan), np.full(n, np.nan)
    first = long + signal - 2
    if n <= first:
        return line, sig, np.full(n, np.nan)
    values = x.tolist()
    fast, slow = np.full(n, np.nan), np.full(n, np.nan)
    _ema_from(values, long - 1, short, fast)
    _ema_from(values, long - 1, long, slow)
    full = fast - slow
    _ema_from(full.tolist(), first, signal, sig)
    line[first:] = full[first:]
    return line, sig, line - sig
