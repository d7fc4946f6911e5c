"""The WebSocket `/stocks` events in the vendor's shapes (docs/polygon.md#websocket).

Every object the gateway sends on that socket is built here: status objects (each with a
`message`, which the vendor's clients read unconditionally), `T` trades from our `tick`
messages and `AM` minute aggregates from stored 1-minute bars.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

from apps.ops.timestamps import epoch_micros

MINUTE_US = 60_000_000
DAY_US = 86_400_000_000


def status(state: str, message: str) -> dict:
    return {"ev": "status", "status": state, "message": message}


@lru_cache(maxsize=8192)  # a batch's ticks share a handful of times
def tick_micros(ts: str) -> int:
    """Unix µs of a tick message's `ts` (ISO 8601 with a Z)."""
    return epoch_micros(datetime.fromisoformat(ts))


def minute_of(ts: str) -> int:
    """Unix µs of the start of the minute that holds a tick message's `ts`."""
    micros = tick_micros(ts)
    return micros - micros % MINUTE_US


def trade(tick: Mapping, exchange: int, tape: int) -> dict:
    """A `T` event from a `tick` message: id and sequence are the tick's time in Unix µs,
    as the REST side's last trade and trades (`apps/polygon/views.py`, `trade_fields`)."""
    micros = tick_micros(tick["ts"])
    return {
        "ev": "T", "sym": tick["symbol"], "i": str(micros), "x": exchange, "p": tick["price"],
        "s": tick["size"], "c": [], "t": micros // 1000, "q": micros, "z": tape,
    }  # fmt: skip


def minute_agg(
    symbol: str,
    bar: tuple[int, float, float, float, float, int, int],
    *,
    day_volume: int,
    day_value: float,
    day_open: float,
) -> dict:
    """An `AM` event from a stored 1-minute bar `(start µs, o, h, l, c, v, trades)` and its
    UTC day's totals up to and including it: volume, the sum of volume * typical price, open.

    `vw` is the bar's typical price (h + l + c) / 3, as the REST aggregates' `vw`: no
    volume-weighted price is stored. `a` weighs the day's typical prices by volume.
    """
    start, o, h, l, c, v, trades = bar  # noqa: E741  (the vendor's names)
    return {
        "ev": "AM", "sym": symbol, "v": v, "av": day_volume, "op": day_open,
        "vw": (h + l + c) / 3, "o": o, "c": c, "h": h, "l": l,
        "a": day_value / day_volume if day_volume else (h + l + c) / 3,
        "z": round(v / trades) if trades else 0,
        "s": start // 1000, "e": (start + MINUTE_US) // 1000,
    }  # fmt: skip
