"""Channel group names: every group MarketFlux uses is named here and only here.

Channels allows ASCII letters, digits, '-', '_' and '.' in group names (under 100 chars);
tickers are validated to a subset of that by the Symbol model.
"""

from __future__ import annotations

MARKET_GROUP = "market"  # every tick batch, as one list; /ws/market consumers filter it


def ticks_group(symbol: str) -> str:
    """One symbol's ticks, for /ws/stocks/{symbol}."""
    return f"ticks.{symbol.upper()}"


def alerts_group(user_id: int) -> str:
    """A user's fired alerts, for every /ws/market socket that user has open."""
    return f"alerts.user.{user_id}"
