"""The WebSocket envelopes (docs/contracts.md#websocket): the first message of a symbol
feed, subscription acknowledgements and errors. The market shapes inside them come from
`apps.market.messages`."""

from __future__ import annotations

from collections.abc import Mapping

from apps.market.messages import NO_INDICATORS, price


def snapshot(symbol: str, hot: Mapping | None, history: list[dict]) -> dict:
    """First message on /ws/stocks/{symbol}: where the symbol stands and its recent ticks."""
    hot = hot or {}
    return {
        "type": "snapshot",
        **price(symbol, hot),
        "indicators": hot.get("indicators") or NO_INDICATORS,
        "history": history,
    }


def subscribed(symbols: list[str], every: float = 0.0) -> dict:
    """The answer to a /ws/market subscription change; `every` only when conflated."""
    return {"type": "subscribed", "symbols": symbols, **({"every": every} if every else {})}


def error(message: str, **details: object) -> dict:
    return {"type": "error", "message": message, **details}
