"""Fixed numbers and names of the Polygon/Massive-compatible gateway (docs/polygon.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Page sizes, as the vendor's: its defaults and ceilings.
AGGS_LIMIT_DEFAULT = 5000
AGGS_LIMIT_MAX = 50_000
TRADES_LIMIT_DEFAULT = 1000
TRADES_LIMIT_MAX = 50_000
TICKERS_LIMIT_DEFAULT = 100
TICKERS_LIMIT_MAX = 1000
INDICATOR_LIMIT_DEFAULT = 10
INDICATOR_LIMIT_MAX = 5000
INDICATOR_WINDOW_MAX = 1000  # bars in an indicator's window (its warm-up grows with it)
SNAPSHOT_TICKERS_MAX = 1000  # tickers one `?tickers=` may name
# The longest `?tickers=` and `?cursor=` (a page's parameters, base64) a request may carry;
# any other value is at most apps.api.query.QUERY_VALUE_MAX characters. A longer URL would
# not pass the servers anyway (Daphne drops a request line over 16 KiB).
SNAPSHOT_TICKERS_LENGTH = 8192
CURSOR_LENGTH = 8192
VENUES_TTL = 60.0  # seconds before a ticker missing from the venue map reloads it

# Timespans of a fixed length, as one unit; `second` is summed from the ticks, the others
# from the bars (docs/polygon.md#aggregates).
TIMESPANS: dict[str, timedelta] = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
# Calendar timespans, in months of one unit, summed from the day bars.
CALENDAR_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}
ALL_TIMESPANS = (*TIMESPANS, *CALENDAR_MONTHS)
INDICATOR_TIMESPANS = tuple(t for t in ALL_TIMESPANS if t != "second")  # as the vendor's
# Buckets align on 2000-01-01 00:00 UTC, as every bar here; weeks on the Sunday after it.
WEEK_ORIGIN = datetime(2000, 1, 2, tzinfo=UTC)
LONGEST_BUCKET = timedelta(days=3660)

# Times asked for must lie between these (date arithmetic overflows outside them).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# Our exchange names as the vendor's exchange ids and tapes (1: NYSE-listed, 2: other
# exchanges' listings, 3: Nasdaq-listed) and market identifier codes. Other exchange names
# get exchange 0, tape 2 and no MIC.
EXCHANGES: dict[str, tuple[int, int, str]] = {
    "NASDAQ": (12, 3, "XNAS"),
    "NYSE": (10, 1, "XNYS"),
    "NYSE ARCA": (11, 2, "ARCX"),
    "NYSE AMERICAN": (1, 2, "XASE"),
}
OTHER_EXCHANGE = (0, 2, "")
