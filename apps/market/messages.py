"""The shapes of market data as MarketFlux sends it (docs/contracts.md#messages).

One module for every market shape, so that the REST answers, the WebSocket messages and the
hot state built from them keep a field's name and format the same on every door: timestamps
are ISO 8601 UTC with a `Z`, numbers are full-precision JSON numbers, and a value not known
yet (an indicator before warm-up) is null. Alert events are shaped by `apps.alerts.messages`,
the WebSocket envelopes by `apps.streaming.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np

from apps.market.simulator import Quotes

# The indicators every tick carries, in contract order (docs/contracts.md#indicators). The
# engine (`apps.indicators.engine.FIELDS`) computes exactly these; a test holds them equal.
INDICATOR_FIELDS: tuple[str, ...] = (
    "sma_20", "ema_20", "rsi_14", "zscore_20", "anomaly", "macd", "macd_signal", "macd_hist",
    "bb_upper", "bb_middle", "bb_lower",
)  # fmt: skip


def format_ts(ts: datetime) -> str:
    """ISO 8601 in UTC with a Z (microseconds only when there are any)."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


QUOTE_FIELDS: tuple[str, ...] = ("bid", "ask", "bid_size", "ask_size")


def tick_messages(
    *,
    symbols: list[str],
    ts: list[str],
    prices: np.ndarray,
    sizes: list[int],
    volumes: list[int],
    references: list[float],
    quotes: Quotes | None,
    values: Mapping[str, np.ndarray],
) -> list[dict]:
    """`tick` messages for a batch, built column-wise (`ts` already formatted); `volumes`
    is each tick's session volume through it, `references` the price its change is against
    (docs/contracts.md#sessions), so a page shows the change the REST answers give."""
    rows = zip(*(_json_column(values[f]) for f in INDICATOR_FIELDS), strict=True)
    if quotes is None:
        bids = asks = bid_sizes = ask_sizes = [None] * len(symbols)
    else:
        bids, asks = _json_column(quotes.bids), _json_column(quotes.asks)
        bid_sizes = _json_column(quotes.bid_sizes, int)
        ask_sizes = _json_column(quotes.ask_sizes, int)
    # One dict literal a tick: building each from zips and `**` cost a third more at 5,000.
    return [
        {
            "type": "tick", "symbol": symbol, "ts": stamp, "price": price, "size": size,
            "volume": volume, "change": price - reference,
            "change_pct": (price - reference) / reference * 100.0, "bid": bid, "ask": ask,
            "bid_size": bid_size, "ask_size": ask_size,
            "indicators": dict(zip(INDICATOR_FIELDS, row, strict=False)),  # a row per field
        }
        for symbol, stamp, price, size, volume, reference, bid, ask, bid_size, ask_size, row
        in zip(
            symbols, ts, prices.tolist(), sizes, volumes, references, bids, asks, bid_sizes,
            ask_sizes, rows, strict=True,
        )
    ]  # fmt: skip


def _json_column(column: np.ndarray, kind: type = float) -> list:
    """Python values for JSON, NaN (not warmed up yet, no quote) as None; `int` for a
    column of whole numbers that may arrive as floats (quote sizes)."""
    column = np.asarray(column)
    if column.dtype.kind == "f":
        missing = np.isnan(column)
        if kind is int:
            column = np.where(missing, 0, column).astype(np.int64)
        if missing.any():
            column = column.astype(object)
            column[missing] = None
    return column.tolist()


def hot_state(
    tick: Mapping, *, session_open: float, prev_close: float, anomaly_threshold: float
) -> dict:
    """What the pipeline keeps in Redis per symbol: the latest tick (with its change against
    the previous session's close, docs/contracts.md#sessions), its session, indicators.
    `prev_close` is NaN where unknown."""
    return {
        "symbol": tick["symbol"],
        "ts": tick["ts"],
        "price": tick["price"],
        "size": tick["size"],
        "bid": tick["bid"],
        "ask": tick["ask"],
        "bid_size": tick["bid_size"],
        "ask_size": tick["ask_size"],
        "session_open": session_open,
        "prev_close": prev_close if prev_close == prev_close else None,
        "change": tick["change"],
        "change_pct": tick["change_pct"],
        "volume": tick["volume"],
        "anomaly_threshold": anomaly_threshold,
        "indicators": tick["indicators"],
    }


# What REST and WebSocket answers are built from. `hot` is a hot state as above, or None
# for a symbol that has no tick yet: its values are then null.

NO_INDICATORS = {**dict.fromkeys(INDICATOR_FIELDS), "anomaly": False}  # contracts.md#indicators


def price(symbol: str, hot: Mapping | None) -> dict:
    """The latest price and the session's change and volume (`/price`)."""
    hot = hot or {}
    return {
        "symbol": symbol,
        "price": hot.get("price"),
        "ts": hot.get("ts"),
        "change": hot.get("change"),
        "change_pct": hot.get("change_pct"),
        "volume": hot.get("volume"),
    }


def indicators(symbol: str, hot: Mapping | None, *, anomaly_threshold: float) -> dict:
    """The latest tick's indicators, flat (`/indicators`)."""
    hot = hot or {}
    return {
        "symbol": symbol,
        "ts": hot.get("ts"),
        "price": hot.get("price"),
        "anomaly_threshold": anomaly_threshold,
        **(hot.get("indicators") or NO_INDICATORS),
    }


def stock(row: Mapping, hot: Mapping | None) -> dict:
    """A symbol in the stock list: what it is and where its price stands."""
    hot = hot or {}
    return {
        "symbol": row["ticker"],
        "name": row["name"],
        "exchange": row["exchange"],
        "sector": row["sector"],
        "active": row["active"],
        "price": hot.get("price"),
        "change": hot.get("change"),
        "change_pct": hot.get("change_pct"),
        "volume": hot.get("volume"),
        "updated_at": hot.get("ts"),
    }


def history_tick(
    ts: datetime,
    price_: float,
    size: int,
    bid: float | None = None,
    ask: float | None = None,
    bid_size: int | None = None,
    ask_size: int | None = None,
) -> dict:
    """A stored tick as `/history` and a feed's snapshot list it, with its quote (null when
    its source carried none)."""
    return {"ts": format_ts(ts), "price": price_, "size": size, "bid": bid, "ask": ask,
            "bid_size": bid_size, "ask_size": ask_size}  # fmt: skip


# Candle times repeat from answer to answer (the same buckets, asked for again and again):
# 500 hourly candles spent 1.3 ms formatting them, 0.06 ms looking them up here.
_bucket_ts = lru_cache(maxsize=16384)(format_ts)  # a few MB at most


def candle(ts: datetime, open_: float, high: float, low: float, close: float, volume: int,
           trades: int) -> dict:  # fmt: skip
    return {
        "ts": _bucket_ts(ts),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "trades": trades,
    }


def indicator_snapshot(ts: datetime, price_: float, values: Mapping) -> dict:
    """One stored snapshot (`/indicators/history`), flat like `/indicators`."""
    return {"ts": format_ts(ts), "price": price_, **{f: values[f] for f in INDICATOR_FIELDS}}


def series(symbol: str, results: list[dict]) -> dict:
    """Every list of series answers this way, oldest first (docs/contracts.md#rest-api)."""
    return {"symbol": symbol, "count": len(results), "results": results}


OVERVIEW_TOP = 5


def overview(states: Mapping[str, Mapping | None], *, now: datetime) -> dict:
    """The whole market at a glance, from the hot state of every active symbol."""
    rows = []
    for symbol, hot in states.items():
        hot = hot or {}
        ind = hot.get("indicators") or NO_INDICATORS
        rows.append(
            {
                "symbol": symbol,
                "price": hot.get("price"),
                "change_pct": hot.get("change_pct"),
                "volume": hot.get("volume"),
                "rsi_14": ind["rsi_14"],
                "anomaly": bool(ind["anomaly"]),
            }
        )
    priced = [r for r in rows if r["change_pct"] is not None]
    by_change = sorted(priced, key=lambda r: r["change_pct"])
    return {
        "ts": format_ts(now),
        "symbols": rows,
        "advancers": sum(r["change_pct"] > 0 for r in priced),
        "decliners": sum(r["change_pct"] < 0 for r in priced),
        "top_gainers": [r for r in reversed(by_change) if r["change_pct"] > 0][:OVERVIEW_TOP],
        "top_losers": [r for r in by_change if r["change_pct"] < 0][:OVERVIEW_TOP],
        "anomalies": [r for r in rows if r["anomaly"]],
    }


def overview_message(body: dict) -> dict:
    """The overview as /ws/market sends it, once a second."""
    return {"type": "overview", **body}
