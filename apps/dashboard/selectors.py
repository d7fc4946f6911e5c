"""What the dashboard pages show on first paint, read in as few round trips as possible.

Latest values come from the Redis hot state the pipeline writes (`market.selectors`), shapes
from `market.messages` and the symbol feed's snapshot from `streaming.messages`, so a first
paint shows exactly what the WebSocket feed then updates; history (candles, sparklines,
anomaly times) comes from PostgreSQL in bounded range scans of their keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Q

from apps.indicators.models import IndicatorSnapshot
from apps.market import messages
from apps.market import selectors as market
from apps.market.constants import BAR_INTERVALS
from apps.market.models import TICKER_PATTERN, Symbol
from apps.streaming.messages import snapshot

CHART_INTERVALS = list(BAR_INTERVALS)  # 1m 5m 15m 1h 1d, as the bars endpoint accepts
FIRST_PAINT_INTERVAL = "1m"
FIRST_PAINT_CANDLES = 500
OVERLAYS = {"sma": "SMA 20", "ema": "EMA 20", "bb": "Bollinger 20/2"}  # the chart's, in order
DEFAULT_OVERLAYS = frozenset({"sma"})
SPARKLINE_MINUTES = 30
RECENT_ANOMALIES = 10
RECENT_ANOMALY_WINDOW = timedelta(hours=1)  # bounds the scan: one hour of snapshots per symbol
MAX_CHART_MARKERS = 200
# Change % buckets of the heatmap's diverging scale: -5..5, each BUCKET_STEP wide.
BUCKET_STEP = 0.5
BUCKETS = 5


def change_bucket(change_pct: float | None) -> int | None:
    """The colour step of a change % (the JS in overview.js uses the same rule)."""
    if change_pct is None:
        return None
    step = int(abs(change_pct) / BUCKET_STEP + 0.5)  # round half away from zero
    return max(-BUCKETS, min(BUCKETS, step if change_pct >= 0 else -step))


def canonical_ticker(raw: str) -> str | None:
    """The upper-case ticker a path names, or None when it cannot be one (no query made)."""
    ticker = raw.upper()
    return ticker if TICKER_PATTERN.match(ticker) else None


def nav_symbols() -> list[dict]:
    """Known symbols (ticker, name) for the header's search suggestions (one query)."""
    return list(Symbol.objects.order_by("ticker").values("ticker", "name"))


def symbol_search(query: str, *, limit: int = 50) -> list[dict]:
    """Symbols whose ticker starts with `query` or whose name contains it (any case),
    ticker matches first: what the header search suggests and `/stocks/?q=` resolves."""
    query = query.strip()
    if not query:
        return []
    rows = Symbol.objects.filter(Q(ticker__istartswith=query) | Q(name__icontains=query)).values(
        "ticker", "name", "sector", "active"
    )
    found = sorted(rows, key=lambda r: (not r["ticker"].startswith(query.upper()), r["ticker"]))
    return found[:limit]


# One index range scan per symbol of its last minutes of 1-minute bars.
_SPARKLINES = """
SELECT s.ticker, b.ts, b.close
FROM unnest(%(tickers)s::varchar[]) AS s(ticker)
CROSS JOIN LATERAL (
    SELECT m.ts, m.close FROM market_bar m
    WHERE m.symbol_id = s.ticker AND m.interval = '1m' AND m.ts >= %(since)s
    ORDER BY m.ts DESC LIMIT %(limit)s
) AS b
ORDER BY s.ticker, b.ts
"""

# Per symbol, its anomalous snapshots of the last hour: a bounded range of the (symbol, ts) key.
_RECENT_ANOMALIES = """
SELECT a.symbol_id, a.ts, a.price, a.zscore_20
FROM unnest(%(tickers)s::varchar[]) AS s(ticker)
CROSS JOIN LATERAL (
    SELECT i.symbol_id, i.ts, i.price, i.zscore_20 FROM indicators_indicatorsnapshot i
    WHERE i.symbol_id = s.ticker AND i.ts >= %(since)s AND i.anomaly
    ORDER BY i.ts DESC LIMIT %(limit)s
) AS a
ORDER BY a.ts DESC LIMIT %(limit)s
"""


def sparklines(tickers: list[str], *, now: datetime | None = None) -> dict[str, list[dict]]:
    """The closes of each ticker's last SPARKLINE_MINUTES 1-minute bars, oldest first."""
    if not tickers:
        return {}
    now = now or datetime.now(UTC)
    since = now - timedelta(minutes=SPARKLINE_MINUTES)
    out: dict[str, list[dict]] = {t: [] for t in tickers}
    with connection.cursor() as cursor:
        cursor.execute(
            _SPARKLINES, {"tickers": tickers, "since": since, "limit": SPARKLINE_MINUTES}
        )
        for ticker, ts, close in cursor.fetchall():
            out[ticker].append({"t": int(ts.timestamp()), "v": close})
    return out


def sparkline_points(values: list[float], *, width: int = 100, height: int = 24) -> str:
    """SVG polyline points for a sparkline (overview.js draws live ones the same way)."""
    if not values:
        return ""
    if len(values) == 1:
        values = [values[0], values[0]]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in enumerate(values)
    )


def recent_anomalies(tickers: list[str], *, now: datetime | None = None) -> list[dict]:
    """The newest anomalous ticks across the market (last hour), newest first."""
    if not tickers:
        return []
    now = now or datetime.now(UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            _RECENT_ANOMALIES,
            {"tickers": tickers, "since": now - RECENT_ANOMALY_WINDOW, "limit": RECENT_ANOMALIES},
        )
        return [
            {"symbol": s, "ts": messages.format_ts(ts), "price": p, "zscore_20": z}
            for s, ts, p, z in cursor.fetchall()
        ]


def _reference(state: dict) -> float | None:
    """The price a symbol's change is against (docs/contracts.md#sessions)."""
    prev_close = state.get("prev_close")
    return prev_close if prev_close is not None else state.get("session_open")


def overview_page() -> dict:
    """Everything the market page paints first: one row per active symbol, grouped views.

    The overview itself is `market.market_overview()` (the shape `/ws/market` sends), joined
    with the Symbol rows (name, sector) and the hot state's session change.
    """
    symbols = {
        row["ticker"]: row
        for row in Symbol.objects.filter(active=True)
        .order_by("ticker")
        .values("ticker", "name", "sector", "exchange")
    }
    tickers = list(symbols)
    hot = market.hot_states(tickers)
    overview = messages.overview(hot, now=datetime.now(UTC))
    lines = sparklines(tickers)
    rows = []
    for entry in overview["symbols"]:
        ticker = entry["symbol"]
        state = hot.get(ticker) or {}
        closes = [p["v"] for p in lines.get(ticker, [])]
        rows.append(
            {
                **entry,
                "name": symbols[ticker]["name"],
                "sector": symbols[ticker]["sector"] or "Other",
                "change": state.get("change"),
                "reference": _reference(state),
                "ts": state.get("ts"),
                "bucket": change_bucket(entry["change_pct"]),
                "sparkline": sparkline_points(closes),
            }
        )
    sectors: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["sector"], r["symbol"])):
        sectors.setdefault(row["sector"], []).append(row)
    return {
        "overview": overview,
        "rows": rows,
        "sectors": sectors,
        "anomalies": recent_anomalies(tickers),
        "sparkline_minutes": SPARKLINE_MINUTES,
        "initial": {
            "symbols": {
                r["symbol"]: {
                    "name": r["name"],
                    "sector": r["sector"],
                    "reference": r["reference"],
                    "spark": lines.get(r["symbol"], []),
                }
                for r in rows
            },
            "overview": overview,
        },
    }


def anomaly_times(symbol: str, *, since: datetime, limit: int = MAX_CHART_MARKERS) -> list[str]:
    """Timestamps of a symbol's anomalous snapshots since `since`, oldest first (bounded)."""
    stamps = (
        IndicatorSnapshot.objects.filter(symbol_id=symbol, ts__gte=since, anomaly=True)
        .order_by("-ts")
        .values_list("ts", flat=True)[:limit]
    )
    return [messages.format_ts(ts) for ts in reversed(stamps)]


def symbol_page(
    ticker: str, *, interval: str = FIRST_PAINT_INTERVAL, overlays=DEFAULT_OVERLAYS
) -> dict | None:
    """What the symbol page paints first, or None for a ticker that is not a symbol.

    The live panel is the `/ws/stocks` snapshot's shape (without its tick history), the chart
    the bars endpoint's candles, so the page's JS handles first paint and live data alike.
    """
    hot = market.hot_states([ticker])[ticker]
    row = (
        Symbol.objects.filter(ticker=ticker)
        .values("ticker", "name", "exchange", "sector", "active", "anomaly_threshold")
        .first()
    )
    if row is None:
        return None
    candles = market.bars_for_range(symbol=ticker, interval=interval, limit=FIRST_PAINT_CANDLES)
    since = candles[0].ts if candles else datetime.now(UTC) - timedelta(hours=1)
    live = snapshot(ticker, hot, [])
    del live["history"]
    return {
        "symbol": row,
        "live": live,
        "indicator_fields": list(messages.INDICATOR_FIELDS),
        "intervals": CHART_INTERVALS,
        "overlays": [
            {"key": key, "label": label, "on": key in overlays} for key, label in OVERLAYS.items()
        ],
        "initial": {
            "symbol": ticker,
            "interval": interval,
            "limit": FIRST_PAINT_CANDLES,
            "candles": [
                messages.candle(c.ts, c.open, c.high, c.low, c.close, c.volume, c.trades)
                for c in candles
            ],
            "anomalies": anomaly_times(ticker, since=since),
            "live": live,
        },
    }
