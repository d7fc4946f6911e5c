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
# The market page's first paint: this many table rows as HTML (the first screen), every
# symbol as JSON data; sparklines of further rows are read as they scroll into view.
FIRST_SCREEN_ROWS = 20
MAX_SPARKLINE_SYMBOLS = 200  # per request of the page's sparklines endpoint
RECENT_ANOMALIES = 10
RECENT_ANOMALY_WINDOW = timedelta(hours=1)  # bounds the scan: one hour of snapshots per symbol
MAX_CHART_MARKERS = 200
# The market page's embedded rows: one array per symbol, in this order (sector: an index
# into the page's list of sectors), so 5,000 symbols do not repeat 5,000 sets of keys.
OVERVIEW_COLUMNS = (
    "symbol", "name", "sector", "price", "change", "change_pct", "volume", "rsi_14", "anomaly",
)  # fmt: skip
NO_SECTOR = "Other"


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


def sparklines(tickers: list[str], *, now: datetime | None = None) -> dict[str, dict]:
    """Each ticker's closes of the SPARKLINE_MINUTES 1-minute buckets up to now's: `start`
    (the first bucket's time) and `closes`, one per minute, null where no bar was."""
    now = now or datetime.now(UTC)
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=SPARKLINE_MINUTES - 1)
    out = {t: [None] * SPARKLINE_MINUTES for t in tickers}
    if tickers:
        with connection.cursor() as cursor:
            cursor.execute(
                _SPARKLINES, {"tickers": tickers, "since": first, "limit": SPARKLINE_MINUTES}
            )
            for ticker, ts, close in cursor.fetchall():
                index = int((ts - first).total_seconds()) // 60
                if 0 <= index < SPARKLINE_MINUTES:
                    out[ticker][index] = close
    start = messages.format_ts(first)
    return {t: {"start": start, "closes": closes} for t, closes in out.items()}


def sparkline_points(closes: list[float | None], *, width: int = 100, height: int = 24) -> str:
    """SVG polyline points of a sparkline, one x step per minute (static/js/table.js draws
    live ones the same way)."""
    known = [(i, v) for i, v in enumerate(closes) if v is not None]
    if not known:
        return ""
    values = [v for _, v in known]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(closes) - 1 or 1)
    return " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in known)


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


def overview_page() -> dict:
    """What the market page paints first: the first screen of table rows as HTML, every
    active symbol as compact JSON data (OVERVIEW_COLUMNS), the movers and anomalies.

    The overview itself is `messages.overview` (the shape `/ws/market` sends), joined with
    the Symbol rows (name, sector) and the hot state's session change.
    """
    active = Symbol.objects.filter(active=True).order_by("ticker")
    symbols = list(active.values_list("ticker", "name", "sector"))
    tickers = [t for t, _, _ in symbols]
    hot = market.hot_states(tickers)
    overview = messages.overview(hot, now=datetime.now(UTC))
    sectors = sorted({sector or NO_SECTOR for _, _, sector in symbols})
    index = {sector: i for i, sector in enumerate(sectors)}
    data = []
    for (ticker, name, sector), entry in zip(symbols, overview["symbols"], strict=True):
        change = (hot.get(ticker) or {}).get("change")
        values = [entry[k] for k in ("price", "change_pct", "volume", "rsi_14", "anomaly")]
        data.append([ticker, name, index[sector or NO_SECTOR], values[0], change, *values[1:]])
    first = data[:FIRST_SCREEN_ROWS]
    lines = sparklines([row[0] for row in first])
    rows = [
        {**dict(zip(OVERVIEW_COLUMNS, row, strict=True)), "position": i + 2,
         "sparkline": sparkline_points(lines[row[0]]["closes"])}
        for i, row in enumerate(first)
    ]  # fmt: skip
    del overview["symbols"], overview["anomalies"]  # in `data`; the list is the page's own
    return {
        "overview": overview,
        "rows": rows,
        "blank_row": {**dict.fromkeys(OVERVIEW_COLUMNS), "symbol": "", "name": ""},
        "count": len(data),
        "anomalies": recent_anomalies(tickers),
        "sparkline_minutes": SPARKLINE_MINUTES,
        "initial": {
            "columns": OVERVIEW_COLUMNS,
            "sectors": sectors,
            "rows": data,
            "sparklines": {t: lines[t] for t, *_ in first},
            "sparkline_minutes": SPARKLINE_MINUTES,
        },
    }


def page_sparklines(raw: str) -> dict[str, dict] | None:
    """The sparklines the market page asks for (`?symbols=A,B`), or None for a bad list:
    empty, over MAX_SPARKLINE_SYMBOLS, or not tickers. Unknown tickers get empty closes."""
    tickers = list(dict.fromkeys(canonical_ticker(t) for t in raw.split(",") if t))
    if not tickers or len(tickers) > MAX_SPARKLINE_SYMBOLS or None in tickers:
        return None
    return sparklines(tickers)


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
