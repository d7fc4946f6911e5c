"""The shapes of fired alerts: as the API lists them, and as /ws/market pushes them."""

from __future__ import annotations

from datetime import datetime

from apps.market.messages import format_ts


def alert_event(
    *, id: int, rule: int, symbol: str, ts: datetime, condition: str, price: float,
    value: float, message: str, acknowledged: bool,
) -> dict:  # fmt: skip
    """A fired alert, as `/api/v1/alerts/events/` lists it."""
    return {
        "id": id,
        "rule": rule,
        "symbol": symbol,
        "ts": format_ts(ts),
        "condition": condition,
        "price": price,
        "value": value,
        "message": message,
        "acknowledged": acknowledged,
    }


def alert(event: dict) -> dict:
    """An `alert_event` pushed live to its owner over /ws/market."""
    return {"type": "alert", **event}
