"""The shapes of every message MarketFlux sends (DESIGN.md §5), built in one place.

One module for every shape, so that REST answers built from them keep a field's name and
format the same on both doors: timestamps are ISO 8601 UTC with a `Z`, numbers are
full-precision JSON numbers, and a value not known yet (an indicator before warm-up) is null.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np

from apps.indicators.engine import FIELDS

INDICATOR_FIELDS = FIELDS  # DESIGN.md §4, defined by the engine


def format_ts(ts: datetime) -> str:
    """ISO 8601 in UTC with a Z (microseconds only when there are any)."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tick_messages(
    *,
    symbols: list[str],
    ts: list[str],
    prices: np.ndarray,
    sizes: list[int],
    values: Mapping[str, np.ndarray],
) -> list[dict]:
    """`tick` messages for a batch, built column-wise (`ts` already formatted)."""
    columns = [
        values[f].tolist()
        if f == "anomaly"
        else [None if v != v else v for v in values[f].tolist()]
        for f in INDICATOR_FIELDS
    ]
    return [
        {
            "type": "tick",
            "symbol": symbol,
            "ts": stamp,
            "price": price,
            "size": size,
            "indicators": dict(zip(INDICATOR_FIELDS, row, strict=True)),
        }
        for symbol, stamp, price, size, row in zip(
            symbols, ts, prices.tolist(), sizes, zip(*columns, strict=True), strict=True
        )
    ]


def hot_state(tick: Mapping, *, session_open: float, session_volume: int) -> dict:
    """What the pipeline keeps in Redis per symbol: the latest tick, its session, indicators.

    Prices reaching here were validated finite and positive, so plain arithmetic is safe.
    """
    change = tick["price"] - session_open
    return {
        "symbol": tick["symbol"],
        "ts": tick["ts"],
        "price": tick["price"],
        "size": tick["size"],
        "session_open": session_open,
        "change": change,
        "change_pct": change / session_open * 100.0,
        "volume": session_volume,
        "indicators": tick["indicators"],
    }
