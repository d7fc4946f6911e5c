"""Reads of stored indicator values."""

from __future__ import annotations

from apps.indicators.engine import FIELDS
from apps.indicators.models import IndicatorSnapshot


def recent_snapshots(symbol: str, limit: int) -> list[dict]:
    """The last `limit` snapshots of a symbol, oldest first (a backward index scan)."""
    rows = (
        IndicatorSnapshot.objects.filter(symbol_id=symbol)
        .order_by("-ts")
        .values("ts", "price", *FIELDS)[:limit]
    )
    return list(reversed(rows))
