"""The market simulator: geometric Brownian motion with jumps, vectorised over symbols.

Randomness is counter-based (a hash of seed, ticker and time slot), not a stateful
generator: the tick of a symbol at a slot is a pure function of the previous price, the
symbol's parameters, the seed and the slot. That makes the simulator deterministic for a
seed, lets any worker continue from the last stored price after a restart, and makes a
replayed slot produce exactly the ticks it produced the first time.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from apps.market.constants import (
    JUMP_SIGMAS_MAX,
    JUMP_SIGMAS_MIN,
    QUOTE_LOTS_MAX,
    SECONDS_PER_YEAR,
    SPREAD_BASE_BPS,
    SPREAD_LOG_SIGMA,
    SPREAD_VOL_BPS,
    SUB_PENNY_BELOW,
    TRADE_SIZE_LOG_SIGMA,
    TRADE_SIZE_MAX,
    TRADE_SIZE_MEDIAN,
)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_DRAWS_PER_SLOT = 8  # independent uniforms per symbol and slot


@dataclass(frozen=True)
class SimulatorParams:
    """The simulator's view of a symbol (a plain value, so it runs without Django)."""

    ticker: str
    drift: float
    volatility: float
    jump_rate: float  # expected jumps per day


@lru_cache(maxsize=65536)
def _ticker_key(ticker: str) -> int:
    return int.from_bytes(hashlib.blake2b(ticker.encode(), digest_size=8).digest(), "little")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _uniforms(keys: np.ndarray, slot: int) -> np.ndarray:
    """(symbols, draws) uniforms in (0, 1), a pure function of the keys and the slot."""
    counters = np.uint64(slot * _DRAWS_PER_SLOT) + np.arange(_DRAWS_PER_SLOT, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _splitmix64(_splitmix64(keys[:, None] ^ _splitmix64(counters)[None, :]))
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def _normal(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def symbol_keys(tickers: list[str], seed: int) -> np.ndarray:
    seed_key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    keys = np.fromiter((_ticker_key(t) for t in tickers), dtype=np.uint64, count=len(tickers))
    return keys ^ seed_key


def step(
    *,
    params: list[SimulatorParams],
    last_prices: np.ndarray,
    slot: int,
    seed: int,
    interval: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advance every symbol by one slot of `interval` seconds; returns (prices, sizes)."""
    n = len(params)
    if n == 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    drift = np.fromiter((p.drift for p in params), dtype=np.float64, count=n)
    vol = np.fromiter((p.volatility for p in params), dtype=np.float64, count=n)
    jump_rate = np.fromiter((p.jump_rate for p in params), dtype=np.float64, count=n)
    u = _uniforms(symbol_keys([p.ticker for p in params], seed), slot)

    dt = interval / SECONDS_PER_YEAR
    tick_sigma = vol * math.sqrt(dt)
    log_return = (drift - 0.5 * vol * vol) * dt + tick_sigma * _normal(u[:, 0], u[:, 1])

    jump_probability = -np.expm1(-jump_rate * interval / 86400.0)
    jumps = u[:, 2] < jump_probability
    if jumps.any():
        sign = np.where(u[:, 3] < 0.5, -1.0, 1.0)
        size = JUMP_SIGMAS_MIN + (JUMP_SIGMAS_MAX - JUMP_SIGMAS_MIN) * u[:, 4]
        log_return = log_return + np.where(jumps, sign * size * tick_sigma, 0.0)

    prices = np.asarray(last_prices, dtype=np.float64) * np.exp(log_return)
    trade_sizes = np.exp(
        math.log(TRADE_SIZE_MEDIAN) + TRADE_SIZE_LOG_SIGMA * _normal(u[:, 5], u[:, 6])
    )
    # Most prints are round lots; about a third are odd lots.
    round_lot = u[:, 7] < 0.65
    trade_sizes = np.where(
        round_lot, np.maximum(100.0, np.round(trade_sizes / 100.0) * 100.0), trade_sizes
    )
    sizes = np.clip(np.rint(trade_sizes), 1, TRADE_SIZE_MAX).astype(np.int64)
    return prices, sizes


# The quote around each trade comes from a stream of its own, so adding quotes left every
# price and size `step` draws as it was.
_QUOTE_STREAM = 0x71756F746573


@dataclass(frozen=True)
class Quotes:
    """The best bid and offer standing when each trade printed, as columns. Sizes may be
    floats: a NaN in all four columns of a row is a tick without a quote."""

    bids: np.ndarray
    asks: np.ndarray
    bid_sizes: np.ndarray
    ask_sizes: np.ndarray

    @classmethod
    def none(cls, count: int) -> Quotes:
        """`count` ticks without a quote."""
        missing = np.full(count, np.nan)
        return cls(missing, missing, missing, missing)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.bids, self.asks, self.bid_sizes, self.ask_sizes

    def take(self, rows: np.ndarray) -> Quotes:
        return Quotes(*(np.asarray(column)[rows] for column in self.columns()))


def price_increment(prices: np.ndarray) -> np.ndarray:
    """The quoting increment of each price: $0.01, or $0.0001 below $1.00."""
    return np.where(np.asarray(prices) >= SUB_PENNY_BELOW, 0.01, 0.0001)


def quotes(*, params: list[SimulatorParams], prices: np.ndarray, slot: int, seed: int) -> Quotes:
    """A bid and an ask around each trade price on the quoting grid, bid <= price <= ask.

    The spread widens with volatility (market makers' risk) and is at least one increment
    (a cheap stock's spread is the increment itself); where the trade sits inside it is
    drawn, so trades print at the bid, the ask and between. Counter-based like `step`:
    a replayed slot quotes what it quoted the first time.
    """
    n = len(params)
    prices = np.asarray(prices, dtype=np.float64)
    vol = np.fromiter((p.volatility for p in params), dtype=np.float64, count=n)
    u = _uniforms(symbol_keys([p.ticker for p in params], seed ^ _QUOTE_STREAM), slot)
    increment = price_increment(prices)
    spread_bps = (SPREAD_BASE_BPS + SPREAD_VOL_BPS * vol) * np.exp(
        SPREAD_LOG_SIGMA * _normal(u[:, 0], u[:, 1])
    )
    spread = np.maximum(1.0, np.rint(prices * spread_bps * 1e-4 / increment))  # in increments
    # The bids that keep the trade inside a spread of that width, one drawn uniformly.
    on_grid = prices / increment
    lowest = np.maximum(1.0, np.ceil(on_grid - spread - 1e-9))
    choices = np.maximum(1.0, np.floor(on_grid + 1e-9) - lowest + 1)
    bid = lowest + np.floor(u[:, 2] * choices)
    ask = np.maximum(bid + spread, np.ceil(on_grid - 1e-9))  # a price under 1 increment
    lots = np.floor(u[:, 3:5] * QUOTE_LOTS_MAX).astype(np.int64) + 1
    return Quotes(  # rounded: a multiple of the increment exactly as it reads in decimal
        bids=np.round(bid * increment, 4),
        asks=np.round(ask * increment, 4),
        bid_sizes=lots[:, 0] * 100,
        ask_sizes=lots[:, 1] * 100,
    )


def slot_of(epoch_seconds: float, interval: float) -> int:
    """The index of the schedule slot a wall-clock time falls into."""
    return math.floor(epoch_seconds / interval + 1e-9)


# Per-minute volumes of history (backfill) come from a stream of their own, apart from the
# price and size draws of `step`.
_VOLUME_STREAM = 0x766F6C756D65


@lru_cache(maxsize=1)
def trade_size_moments() -> tuple[float, float]:
    """Mean and variance of one trade's size as `step` draws it (from 200,000 of its draws,
    so they hold whatever the size model is)."""
    params = [SimulatorParams(f"M{i}", 0.0, 0.2, 0.0) for i in range(20_000)]
    ones = np.ones(len(params))
    sizes = np.concatenate(
        [step(params=params, last_prices=ones, slot=s, seed=0, interval=1.0)[1] for s in range(10)]
    ).astype(np.float64)
    return float(sizes.mean()), float(sizes.var())


def minute_volumes(
    *, tickers: list[str], minutes: np.ndarray, seed: int, trades: int
) -> np.ndarray:
    """(symbols, minutes) volumes of `trades` trades each: what a live minute of `trades`
    ticks adds up to, without drawing every trade (backfill writes years of minutes).

    A sum of that many sizes is drawn as a gamma variate with the sum's mean and variance
    (Wilson-Hilferty's cube of a normal, accurate to a fraction of a percent for the 70-odd
    shape of a minute of 0.5 s ticks). Randomness is counter-based on (seed, ticker,
    minute), so a minute's volume does not depend on how the history is cut into chunks.
    """
    mean, var = trade_size_moments()
    shape, scale = trades * mean * mean / var, var / mean
    keys = symbol_keys(tickers, seed ^ _VOLUME_STREAM)
    counters = keys[:, None] ^ _splitmix64(np.asarray(minutes, dtype=np.uint64))[None, :]
    u = _uniforms(counters.ravel(), 0)
    z = _normal(u[:, 0], u[:, 1]).reshape(counters.shape)
    c = 1.0 / (9.0 * shape)
    gamma = shape * scale * np.maximum(1.0 - c + z * math.sqrt(c), 0.0) ** 3
    return np.maximum(np.rint(gamma), trades).astype(np.int64)  # each trade is a share at least
