"""Constants of the market app: one home for every fixed number and name."""

from __future__ import annotations

from datetime import timedelta

SECONDS_PER_YEAR = 365.0 * 24 * 3600  # the simulated market trades around the clock

BAR_INTERVAL_1M = "1m"
BAR_INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
# Intervals served by TimescaleDB continuous aggregates (name of the view per interval).
CONTINUOUS_AGGREGATE_VIEWS: dict[str, str] = {
    "5m": "market_bar_5m",
    "15m": "market_bar_15m",
    "1h": "market_bar_1h",
    "1d": "market_bar_1d",
}

# |z-score| of a price against its last 20 at which a tick is an anomaly. A random walk's
# own noise crosses 3.0 about 18 times an hour per symbol at 0.5 s ticks (1.5 a minute
# across the five default symbols); at 3.5 it is about once an hour, half of them the
# simulator's jumps (docs/contracts.md#indicators; apps/market/tests/test_simulator.py).
DEFAULT_ANOMALY_THRESHOLD = 3.5

# Jumps: size of a jump in units of one tick's standard deviation, so anomalies show.
JUMP_SIGMAS_MIN = 6.0
JUMP_SIGMAS_MAX = 12.0

# Trade sizes: log-normal around a median of 100 shares.
TRADE_SIZE_MEDIAN = 100.0
TRADE_SIZE_LOG_SIGMA = 1.0
TRADE_SIZE_MAX = 50_000

# Quotes: the quoted spread is SPREAD_BASE_BPS + SPREAD_VOL_BPS per unit of annual volatility
# (so 3 bps at the default 25 %), times a log-normal factor, and never under one price
# increment; each side shows 1 to QUOTE_LOTS_MAX round lots (docs/contracts.md#quotes).
SPREAD_BASE_BPS = 1.0
SPREAD_VOL_BPS = 8.0
SPREAD_LOG_SIGMA = 0.35
QUOTE_LOTS_MAX = 10
SUB_PENNY_BELOW = 1.0  # Reg NMS rule 612: $0.0001 increments below $1.00, $0.01 from there

# The default market that `seed_symbols` creates.
DEFAULT_SYMBOLS: list[dict] = [
    {
        "ticker": "AAPL",
        "name": "Apple Inc.",
        "exchange": "NASDAQ",
        "sector": "Technology",
        "start_price": 228.50,
        "drift": 0.08,
        "volatility": 0.25,
        "jump_rate": 12.0,
    },
    {
        "ticker": "MSFT",
        "name": "Microsoft Corporation",
        "exchange": "NASDAQ",
        "sector": "Technology",
        "start_price": 415.20,
        "drift": 0.07,
        "volatility": 0.22,
        "jump_rate": 10.0,
    },
    {
        "ticker": "GOOGL",
        "name": "Alphabet Inc. Class A",
        "exchange": "NASDAQ",
        "sector": "Communication Services",
        "start_price": 172.80,
        "drift": 0.06,
        "volatility": 0.28,
        "jump_rate": 12.0,
    },
    {
        "ticker": "AMZN",
        "name": "Amazon.com, Inc.",
        "exchange": "NASDAQ",
        "sector": "Consumer Discretionary",
        "start_price": 186.40,
        "drift": 0.09,
        "volatility": 0.30,
        "jump_rate": 14.0,
    },
    {
        "ticker": "TSLA",
        "name": "Tesla, Inc.",
        "exchange": "NASDAQ",
        "sector": "Consumer Discretionary",
        "start_price": 248.90,
        "drift": 0.10,
        "volatility": 0.55,
        "jump_rate": 24.0,
    },
]
