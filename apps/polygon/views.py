"""The Polygon/Massive-compatible REST read side (docs/polygon.md): thin views over
`apps.market.selectors`, at the paths the vendor's official clients build, with the
vendor's envelopes. Paging state travels whole in `next_url`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.permissions import MarketDataPermission
from apps.api.query import CheckedQuery
from apps.api.renderers import FastJSONRenderer
from apps.api.views import find_symbol
from apps.market import selectors, sessions
from apps.market.messages import QUOTE_FIELDS
from apps.market.models import Symbol
from apps.polygon import constants as c
from apps.polygon import indicators
from apps.polygon import messages as m
from apps.polygon import params as p
from apps.polygon import selectors as polygon_selectors
from apps.polygon import serializers as s
from apps.polygon.auth import ApiKeyAuthentication

_STATUS_WORDS = {401: "NOT_AUTHORIZED", 403: "NOT_AUTHORIZED", 404: "NOT_FOUND"}


def _error_text(data) -> str:
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    if isinstance(data, dict):
        return "; ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in data.items())
    return str(data)


class JSONOnly(BaseContentNegotiation):
    """JSON whatever the client asks for: `?format=` and odd `Accept`s are ignored."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class GatewayView(CheckedQuery, APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [MarketDataPermission]
    renderer_classes = [FastJSONRenderer]
    content_negotiation_class = JSONOnly

    def initial(self, request, *args, **kwargs):
        self.request_id = uuid.uuid4().hex
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        """Errors in the vendor's shape (`status`, `request_id`, `error`); a 400 also
        names each bad parameter in `errors`. DRF's headers (Retry-After) are kept."""
        response = super().handle_exception(exc)
        body = {
            "status": _STATUS_WORDS.get(response.status_code, "ERROR"),
            "request_id": getattr(self, "request_id", uuid.uuid4().hex),
            "error": _error_text(response.data),
        }
        if isinstance(exc, ValidationError) and isinstance(response.data, dict):
            body["errors"] = {k: [str(msg) for msg in v] for k, v in response.data.items()}
        response.data = body
        return response

    def answer(self, body: dict) -> Response:
        return Response({"status": "OK", "request_id": self.request_id, **body})

    def next_url(self, path: str, query: dict) -> str:
        return self.request.build_absolute_uri(f"{path}?cursor={p.cursor_encode(query)}")


def symbol_row(raw: str) -> Symbol:
    ticker, _ = find_symbol(raw)
    return Symbol.objects.get(ticker=ticker)


_ERRORS = {
    401: s.ErrorSerializer,
    403: s.ErrorSerializer,  # MARKETFLUX_PUBLIC_READ=0 and the key's owner reads no market
    404: s.ErrorSerializer,
    429: s.ErrorSerializer,
}
_ERRORS_400 = {400: s.ErrorSerializer, **_ERRORS}


def _path(name: str, kind=OpenApiTypes.STR, description: str = "", **extra) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.PATH, description=description, **extra)


def _query(name: str, kind=OpenApiTypes.STR, description: str = "", **extra) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **extra)


_AGG = {"o": 189.7, "h": 190.4, "l": 189.5, "c": 190.12, "v": 81234, "vw": 190.0067,
        "n": 720, "t": 1796212800000}  # fmt: skip
_OK = {"status": "OK", "request_id": "6a7e466379af0a71039d60cc78e72282"}
_NEXT = "http://127.0.0.1:8000/v3/trades/AAPL?cursor=b3JkZXI9YXNjJmxpbWl0PTI"
_TRADE = {"price": 190.12, "size": 37, "sip_timestamp": 1796212805500000000,
          "participant_timestamp": 1796212805500000000, "sequence_number": 1796212805500000,
          "exchange": 12, "id": "1796212805500000", "conditions": [], "tape": 3}  # fmt: skip
_TICKER = {"ticker": "AAPL", "name": "Apple Inc.", "market": "stocks", "locale": "us",
           "primary_exchange": "XNAS", "type": "CS", "active": True, "currency_name": "usd",
           "last_updated_utc": "2026-12-02T15:04:05Z"}  # fmt: skip


_QUOTE = {"T": "AAPL", "t": 1796212805500000000, "y": 1796212805500000000,
          "q": 1796212805500000, "p": 190.1, "s": 3, "x": 12, "P": 190.13, "S": 5, "X": 12,
          "z": 3, "c": [], "i": []}  # fmt: skip


def _example(name: str, value: dict) -> list[OpenApiExample]:
    return [OpenApiExample(name, value={**_OK, **value}, response_only=True, status_codes=["200"])]


SYMBOL = _path("symbol", description="Ticker, any case.")
ADJUSTED = _query("adjusted", OpenApiTypes.BOOL, "Accepted; prices are never adjusted.")
CURSOR = _query(
    "cursor", {"type": "string", "maxLength": c.CURSOR_LENGTH}, "Opaque; from `next_url`."
)
_GATEWAY = {"tags": ["polygon"]}


class Aggregates(GatewayView):
    """`GET /v2/aggs/ticker/{T}/range/{multiplier}/{timespan}/{from}/{to}`."""

    @extend_schema(
        operation_id="polygon_aggs",
        examples=_example(
            "Two minutes, more to come",
            {
                "ticker": "AAPL",
                "adjusted": True,
                "queryCount": 2,
                "resultsCount": 2,
                "count": 2,
                "results": [_AGG, {**_AGG, "t": _AGG["t"] + 60000}],
                "next_url": "http://127.0.0.1:8000/v2/aggs/ticker/AAPL/range/1/minute/"
                "1796212920000/1796299199999?cursor=YWRqdXN0ZWQ9dHJ1ZSZzb3J0PWFzYyZsaW1pdD0y",
            },
        ),
        parameters=[
            SYMBOL,
            _path("multiplier", OpenApiTypes.INT, "Units of `timespan` per bar."),
            _path(
                "timespan",
                description="second (from the ticks), minute, hour, day, week, "
                "month, quarter or year.",
                enum=list(c.ALL_TIMESPANS),
            ),
            _path("from", description="First window start: YYYY-MM-DD (UTC) or Unix ms."),
            _path("to", description="Last window start: YYYY-MM-DD (whole day) or Unix ms."),
            ADJUSTED,
            _query("sort", description="asc (default) or desc.", enum=["asc", "desc"]),
            _query("limit", OpenApiTypes.INT, f"Bars per page, 1-{c.AGGS_LIMIT_MAX}."),
            CURSOR,
        ],
        responses={200: s.AggsSerializer, **_ERRORS_400},
        **_GATEWAY,
    )
    def get(self, request: Request, symbol: str, multiplier: str, timespan: str, **kwargs):
        ticker, _ = find_symbol(symbol)
        query = p.query_of(request)
        span = _span(multiplier, timespan, c.ALL_TIMESPANS)
        start, _ = p.instant(kwargs["from"], "from", unit="ms")
        end, whole_day = p.instant(kwargs["to"], "to", unit="ms")
        end += timedelta(days=1) if whole_day else timedelta(milliseconds=1)
        adjusted = p.boolean(query, "adjusted", default=True)
        sort = p.choice(query, "sort", ("asc", "desc"), default="asc")
        limit = p.integer(
            query, "limit", default=c.AGGS_LIMIT_DEFAULT, low=1, high=c.AGGS_LIMIT_MAX
        )
        page = polygon_selectors.Page([])
        if start < end:
            page = span.page(symbol=ticker, start=start, end=end, limit=limit,
                             newest_first=sort == "desc")  # fmt: skip
        candles = page.candles
        body = {
            "ticker": ticker, "adjusted": adjusted, "queryCount": len(candles),
            "resultsCount": len(candles), "count": len(candles),
            "results": [m.agg(x) for x in candles],
        }  # fmt: skip
        if len(candles) == limit or page.resume is not None:
            if len(candles) == limit:
                last = candles[-1].ts
                resume = last + timedelta(milliseconds=1) if sort == "asc" else last
            else:
                resume = page.resume  # a window of seconds: the next one, even if empty
            if sort == "asc":
                start = resume  # moved up to the next window
            else:
                end = resume
            if start < end:
                path = (
                    f"/v2/aggs/ticker/{ticker}/range/{int(multiplier)}/{timespan}/"
                    f"{p.ms_of(start)}/{p.ms_of(end) - 1}"
                )
                cursor = {"adjusted": str(adjusted).lower(), "sort": sort, "limit": limit}
                body["next_url"] = self.next_url(path, cursor)
        return self.answer(body)


def _span(multiplier: str, timespan: str, served: tuple[str, ...]) -> polygon_selectors.Span:
    if timespan not in served:
        raise p.bad("timespan", f"must be one of {', '.join(served)}.")
    unit = c.TIMESPANS.get(timespan) or timedelta(days=31 * c.CALENDAR_MONTHS[timespan])
    count = p.integer({"multiplier": multiplier}, "multiplier", default=1, low=1,
                      high=c.LONGEST_BUCKET // unit)  # fmt: skip
    return polygon_selectors.Span(timespan, count)


class PreviousClose(GatewayView):
    """`GET /v2/aggs/ticker/{T}/prev`: the last whole UTC day's bar."""

    @extend_schema(
        operation_id="polygon_previous_close",
        examples=_example(
            "Yesterday",
            {
                "ticker": "AAPL",
                "adjusted": True,
                "queryCount": 1,
                "resultsCount": 1,
                "count": 1,
                "results": [{"T": "AAPL", **_AGG}],
            },
        ),
        parameters=[SYMBOL, ADJUSTED],
        responses={200: s.TickerAggsSerializer, **_ERRORS_400},
        **_GATEWAY,
    )
    def get(self, request: Request, symbol: str):
        ticker, _ = find_symbol(symbol)
        adjusted = p.boolean(request.query_params.dict(), "adjusted", default=True)
        # The session before today's, as the snapshot's prevDay (docs/contracts.md#sessions).
        previous = selectors.snapshot_bars(tickers=[ticker], now=datetime.now(UTC))[ticker]
        candles = [previous.prev_day] if previous.prev_day else []
        results = [{"T": ticker, **m.agg(x)} for x in candles]
        return self.answer(
            {"ticker": ticker, "adjusted": adjusted, "queryCount": len(results),
             "resultsCount": len(results), "count": len(results), "results": results}
        )  # fmt: skip


class GroupedDaily(GatewayView):
    """`GET /v2/aggs/grouped/locale/us/market/stocks/{date}`: every active symbol's day."""

    @extend_schema(
        operation_id="polygon_grouped_daily",
        examples=_example(
            "One day",
            {
                "adjusted": True,
                "queryCount": 1,
                "resultsCount": 1,
                "count": 1,
                "results": [{"T": "AAPL", **_AGG}],
            },
        ),
        parameters=[_path("date", description="YYYY-MM-DD: the session of that date."), ADJUSTED],
        responses={200: s.TickerAggsSerializer, **_ERRORS_400},
        **_GATEWAY,
    )
    def get(self, request: Request, date: str):
        start = p.midnight(p.day(date, "date"))
        adjusted = p.boolean(request.query_params.dict(), "adjusted", default=True)
        results = []
        tickers = sorted(selectors.active_tickers())
        clocks = sessions.clocks_of(tickers)
        for ticker in tickers:
            bars = selectors.bars_page(
                symbol=ticker, step=timedelta(days=1), start=start,
                end=start + timedelta(days=1), limit=1, clock=clocks[ticker],
            )  # fmt: skip
            results += [{"T": ticker, **m.agg(x)} for x in bars]
        return self.answer(
            {"adjusted": adjusted, "queryCount": len(results), "resultsCount": len(results),
             "count": len(results), "results": results}
        )  # fmt: skip


class LastTrade(GatewayView):
    """`GET /v2/last/trade/{T}`: the newest stored tick."""

    @extend_schema(
        operation_id="polygon_last_trade",
        examples=_example(
            "The newest tick",
            {
                "results": {
                    "T": "AAPL",
                    "t": 1796212805500000000,
                    "y": 1796212805500000000,
                    "q": 1796212805500000,
                    "i": "1796212805500000",
                    "p": 190.12,
                    "s": 37,
                    "x": 12,
                    "z": 3,
                    "c": [],
                }
            },
        ),
        parameters=[SYMBOL],
        responses={200: s.LastTradeSerializer, **_ERRORS},
        **_GATEWAY,
    )
    def get(self, request: Request, symbol: str):
        ticker, hot = find_symbol(symbol)
        venue = polygon_selectors.venues.current(ticker)
        if hot is not None:  # the pipeline writes it after its tick commits
            tick = (datetime.fromisoformat(hot["ts"]), hot["price"], hot["size"])
        else:  # Redis lost it (a restart): the newest stored tick
            ticks = selectors.ticks_page(symbol=ticker, start=None, end=None, limit=1,
                                         newest_first=True)  # fmt: skip
            if not ticks:
                raise NotFound(f"No trade of {ticker} yet.")
            tick = ticks[0]
        return self.answer({"results": m.last_trade(ticker, venue, *tick)})


class LastQuote(GatewayView):
    """`GET /v2/last/nbbo/{T}`: the newest tick's quote, or the newest stored quote when
    that tick carried none."""

    @extend_schema(
        operation_id="polygon_last_quote",
        examples=_example("The newest quote", {"results": _QUOTE}),
        parameters=[SYMBOL],
        responses={200: s.LastQuoteSerializer, **_ERRORS},
        **_GATEWAY,
    )
    def get(self, request: Request, symbol: str):
        ticker, hot = find_symbol(symbol)
        venue = polygon_selectors.venues.current(ticker)
        if hot is not None and hot.get("bid") is not None:
            quote = (datetime.fromisoformat(hot["ts"]), *(hot[f] for f in QUOTE_FIELDS))
        elif (quote := selectors.last_quote(ticker)) is None:
            raise NotFound(f"No quote of {ticker} yet.")
        return self.answer({"results": m.last_quote(ticker, venue, *quote)})


_TS_BOUNDS = ("timestamp.gte", "timestamp.gt", "timestamp.lte", "timestamp.lt")


def _trade_window(query: dict) -> tuple[int | None, int | None]:
    """[start, end) in microseconds from `timestamp` and its bounds (each a date or ns)."""
    start = end = None

    def lower(value: int) -> None:
        nonlocal start
        start = value if start is None else max(start, value)

    def upper(value: int) -> None:
        nonlocal end
        end = value if end is None else min(end, value)

    if "timestamp" in query:
        ns, whole_day = p.nanos(query["timestamp"], "timestamp")
        lower(-(-ns // 1000))
        upper((ns + 86_400 * 10**9) // 1000 if whole_day else ns // 1000 + 1)
    for name in _TS_BOUNDS:
        if name in query:
            ns, _ = p.nanos(query[name], name)
            {
                "timestamp.gte": lambda ns=ns: lower(-(-ns // 1000)),
                "timestamp.gt": lambda ns=ns: lower(ns // 1000 + 1),
                "timestamp.lt": lambda ns=ns: upper(-(-ns // 1000)),
                "timestamp.lte": lambda ns=ns: upper(ns // 1000 + 1),
            }[name]()
    return start, end


class Trades(GatewayView):
    """`GET /v3/trades/{T}`: stored ticks as trades, by time, paged."""

    @extend_schema(
        operation_id="polygon_trades",
        examples=_example("A page of one", {"results": [_TRADE], "next_url": _NEXT}),
        parameters=[
            SYMBOL,
            _query("timestamp", description="A date YYYY-MM-DD (that UTC day) or Unix ns."),
            *[_query(name, description="A date YYYY-MM-DD or Unix ns.") for name in _TS_BOUNDS],
            _query("order", description="desc (default) or asc.", enum=["asc", "desc"]),
            _query("sort", description="timestamp (the only one).", enum=["timestamp"]),
            _query("limit", OpenApiTypes.INT, f"Trades per page, 1-{c.TRADES_LIMIT_MAX}."),
            CURSOR,
        ],
        responses={200: s.TradesSerializer, **_ERRORS_400},
        **_GATEWAY,
    )
    def get(self, request: Request, symbol: str):
        ticker, _ = find_symbol(symbol)
        venue = polygon_selectors.venues.current(ticker)
        query = p.query_of(request)
        start, end = _trade_window(query)
        order = p.choice(query, "order", ("asc", "desc"), default="desc")
        p.choice(query, "sort", ("timestamp",), default="timestamp")
        limit = p.integer(
            query, "limit", default=c.TRADES_LIMIT_DEFAULT, low=1, high=c.TRADES_LIMIT_MAX
        )
        ticks = []
        if start is None or end is None or start < end:
            ticks = selectors.ticks_page(
                symbol=ticker,
                start=None if start is None else p.from_micros(start),
                end=None if end is None else p.from_micros(end),
                limit=limit, newest_first=order == "desc",
            )  # fmt: skip
        results = []
        for ts, price, size in ticks:
            f = m.trade_fields(ts, venue)
            results.append(
                {"price": price, "size": size, "sip_timestamp": f["ns"],
                 "participant_timestamp": f["ns"], "sequence_number": f["sequence"],
                 "exchange": f["exchange"], "id": str(f["sequence"]), "conditions": [],
                 "tape": f["tape"]}
            )  # fmt: skip
        body = {"results": results}
        if len(ticks) == limit:
            last = p.ns_of(ticks[-1][0])
            cursor = {"order": order, "limit": limit, "sort": "timestamp"}
            if start is not None:
                cursor["timestamp.gte"] = start * 1000
            if end is not None:
                cursor["timestamp.lt"] = end * 1000
            cursor["timestamp.gt" if order == "asc" else "timestamp.lt"] = last
            body["next_url"] = self.next_url(f"/v3/trades/{ticker}", cursor)
        return self.answer(body)


_TICKER_BOUNDS = {"ticker.gte": "gte", "ticker.gt": "gt", "ticker.lte": "lte", "ticker.lt": "lt"}
# What the next page's cursor carries of a request: its filters (not the parameters the
# gateway ignores, nor `apiKey`), so a cursor stays within CURSOR_LENGTH.
_TICKERS_CARRIED = ("ticker", *_TICKER_BOUNDS, "search", "market")


class Tickers(GatewayView):
    """`GET /v3/reference/tickers`: the Symbol table, by ticker, paged."""

    @extend_schema(
        operation_id="polygon_tickers",
        examples=_example("The last page", {"count": 1, "results": [_TICKER]}),
        parameters=[
            _query("ticker", description="Exactly this ticker."),
            *[_query(name, description="Tickers after/before this.") for name in _TICKER_BOUNDS],
            _query("search", description="Part of the ticker or the name, any case."),
            _query("active", OpenApiTypes.BOOL, "true (default) or false."),
            _query("market", description="Only `stocks` has tickers here."),
            _query("order", description="asc (default) or desc.", enum=["asc", "desc"]),
            _query("sort", description="ticker (the only one).", enum=["ticker"]),
            _query("limit", OpenApiTypes.INT, f"Tickers per page, 1-{c.TICKERS_LIMIT_MAX}."),
            CURSOR,
        ],
        responses={200: s.TickersSerializer, **_ERRORS_400},
        **_GATEWAY,
    )
    def get(self, request: Request):
        query = p.query_of(request)
        order = p.choice(query, "order", ("asc", "desc"), default="asc")
        p.choice(query, "sort", ("ticker",), default="ticker")
        limit = p.integer(
            query, "limit", default=c.TICKERS_LIMIT_DEFAULT, low=1, high=c.TICKERS_LIMIT_MAX
        )
        active = p.boolean(query, "active", default=True)
        rows = Symbol.objects.filter(active=active)
        if "ticker" in query:
            rows = rows.filter(ticker=p.text(query, "ticker").upper())
        for name, lookup in _TICKER_BOUNDS.items():
            if name in query:
                rows = rows.filter(**{f"ticker__{lookup}": p.text(query, name).upper()})
        if query.get("search"):
            term = p.text(query, "search")
            rows = rows.filter(Q(ticker__icontains=term) | Q(name__icontains=term))
        if query.get("market", "stocks").lower() != "stocks":
            rows = rows.none()
        page = list(rows.order_by("-ticker" if order == "desc" else "ticker")[:limit])
        body = {"count": len(page), "results": [m.ticker_fields(x) for x in page]}
        if len(page) == limit:
            after = {k: v for k, v in query.items() if k in _TICKERS_CARRIED}
            after.update(order=order, limit=limit, active=str(active).lower())
            after["ticker.gt" if order == "asc" else "ticker.lt"] = page[-1].ticker
            body["next_url"] = self.next_url("/v3/reference/tickers", after)
        return self.answer(body)


class TickerDetails(GatewayView):
    """`GET /v3/reference/tickers/{T}`: one symbol."""

    @extend_schema(
        operation_id="polygon_ticker_details",
        examples=_example(
            "A symbol",
            {
                "results": {
                    **_TICKER,
                    "description": "Apple Inc.",
                    "sic_description": "Technology",
                    "list_date": "2026-12-01",
                }
            },
        ),
        parameters=[SYMBOL],
        responses={200: s.TickerDetailsSerializer, **_ERRORS},
        **_GATEWAY,
    )
    def get(self, request: Request, symbol: str):
        row = symbol_row(symbol)
        return self.answer(
            {"results": {**m.ticker_fields(row), "description": row.name,
                         "sic_description": row.sector,
                         "list_date": row.created_at.astimezone(UTC).date().isoformat()}}
        )  # fmt: skip


_SNAPSHOT = {
    "ticker": "AAPL",
    "todaysChange": 1.27,
    "todaysChangePerc": 0.6724,
    "updated": 1796212805500000000,
    "lastTrade": {"T": "AAPL", "t": 1796212805500000000, "y": 1796212805500000000,
                  "q": 1796212805500000, "i": "1796212805500000", "p": 190.12, "s": 37,
                  "x": 12, "z": 3, "c": []},
    "lastQuote": _QUOTE,
    "day": {**_AGG, "t": 1796169600000},
    "min": {**_AGG, "v": 1234, "n": 12, "t": 1796212800000, "av": 81234},
    "prevDay": {**_AGG, "c": 188.85, "t": 1796083200000},
}  # fmt: skip


class SnapshotAll(GatewayView):
    """`GET /v2/snapshot/locale/us/markets/stocks/tickers`: every active symbol's snapshot,
    or those `tickers` names; in a bounded number of reads whatever their number."""

    @extend_schema(
        operation_id="polygon_snapshot_all",
        examples=_example("One symbol", {"count": 1, "tickers": [_SNAPSHOT]}),
        parameters=[
            _query(
                "tickers",
                # Empty is allowed (every active symbol): the clients send `tickers=` for [].
                {"type": "string", "minLength": 0, "maxLength": c.SNAPSHOT_TICKERS_LENGTH},
                description="Comma-separated tickers (any case); unknown ones are left out. "
                "Without it, or empty: every active symbol.",
            ),
        ],
        responses={200: s.SnapshotAllSerializer, **_ERRORS_400},
        **_GATEWAY,
    )
    def get(self, request: Request):
        query = request.query_params.dict()
        rows = Symbol.objects.filter(active=True)
        if query.get("tickers"):
            wanted = {t.strip().upper() for t in p.text(query, "tickers").split(",")} - {""}
            if len(wanted) > c.SNAPSHOT_TICKERS_MAX:
                raise p.bad("tickers", f"at most {c.SNAPSHOT_TICKERS_MAX} tickers.")
            rows = Symbol.objects.filter(ticker__in=wanted)
        rows = list(rows.order_by("ticker"))
        tickers = [row.ticker for row in rows]
        hot = selectors.hot_states(tickers)
        bars = selectors.snapshot_bars(tickers=tickers, now=datetime.now(UTC))
        snapshots = [m.ticker_snapshot(row, hot[row.ticker], bars[row.ticker]) for row in rows]
        return self.answer({"count": len(snapshots), "tickers": snapshots})


class SnapshotTicker(GatewayView):
    """`GET /v2/snapshot/locale/us/markets/stocks/tickers/{T}`: one symbol's snapshot."""

    @extend_schema(
        operation_id="polygon_snapshot_ticker",
        examples=_example("A symbol", {"ticker": _SNAPSHOT}),
        parameters=[SYMBOL],
        responses={200: s.SnapshotTickerSerializer, **_ERRORS},
        **_GATEWAY,
    )
    def get(self, request: Request, symbol: str):
        ticker, hot = find_symbol(symbol)
        row = Symbol.objects.get(ticker=ticker)
        bars = selectors.snapshot_bars(tickers=[ticker], now=datetime.now(UTC))[ticker]
        return self.answer({"ticker": m.ticker_snapshot(row, hot, bars)})


def _moment(raw: str, name: str) -> tuple[datetime, bool]:
    """An indicator's time: a date, Unix ms, or Unix ns (what the clients send for a
    datetime) when it is 1e17 or more (as ms that would be past the year 2200)."""
    unit = "ns" if raw.isascii() and raw.isdigit() and int(raw) >= 10**17 else "ms"
    return p.instant(raw, name, unit=unit)


def _indicator_window(query: dict) -> tuple[datetime | None, datetime | None]:
    """[start, end) of the values' timestamps from `timestamp` and its bounds."""
    start = end = None
    tick = timedelta(microseconds=1)
    if "timestamp" in query:
        at, whole_day = _moment(query["timestamp"], "timestamp")
        start, end = at, at + (timedelta(days=1) if whole_day else tick)
    for name in _TS_BOUNDS:
        if name in query:
            at, _ = _moment(query[name], name)
            if name in ("timestamp.gte", "timestamp.gt"):
                at += tick if name == "timestamp.gt" else timedelta(0)
                start = at if start is None else max(start, at)
            else:
                at += tick if name == "timestamp.lte" else timedelta(0)
                end = at if end is None else min(end, at)
    return start, end


_SERIES_TYPES = ("close", "open", "high", "low")


class IndicatorView(GatewayView):
    """`GET /v1/indicators/{kind}/{T}`: values over the aggregates of one `timespan` unit,
    computed with enough warm-up bars before the first one (apps/polygon/indicators.py)."""

    kind = ""
    windows: tuple[tuple[str, int, int], ...] = ()  # (name, default, lowest)

    def parameters(self, query: dict) -> tuple[int, ...]:
        windows = tuple(
            p.integer(query, name, default=default, low=low, high=c.INDICATOR_WINDOW_MAX)
            for name, default, low in self.windows
        )
        if self.kind == "macd" and windows[0] >= windows[1]:
            raise p.bad("short_window", "must be less than long_window.")
        return windows

    def values(self, x: np.ndarray, windows: tuple[int, ...]) -> list[np.ndarray]:
        if self.kind == "macd":
            return list(indicators.macd(x, *windows))
        return [getattr(indicators, self.kind)(x, *windows)]

    def get(self, request: Request, symbol: str):
        ticker, _ = find_symbol(symbol)
        query = request.query_params.dict()
        timespan = query.get("timespan", "day")
        span = _span("1", timespan, c.INDICATOR_TIMESPANS)
        windows = self.parameters(query)
        series = p.choice(query, "series_type", _SERIES_TYPES, default="close")
        order = p.choice(query, "order", ("asc", "desc"), default="desc")
        limit = p.integer(query, "limit", default=c.INDICATOR_LIMIT_DEFAULT, low=1,
                          high=c.INDICATOR_LIMIT_MAX)  # fmt: skip
        p.boolean(query, "adjusted", default=True)
        expand = p.boolean(query, "expand_underlying", default=False)
        start, end = _indicator_window(query)
        warmup = indicators.warmup(self.kind, windows)
        bars: list[selectors.Candle] = []
        if start is None or end is None or start < end:
            if order == "desc":
                bars = span.page(
                    symbol=ticker, start=c.EARLIEST, end=end or c.LATEST, limit=limit + warmup,
                    newest_first=True,
                ).candles[::-1]  # fmt: skip
            else:
                if start is not None:
                    bars = span.page(symbol=ticker, start=c.EARLIEST, end=start, limit=warmup,
                                     newest_first=True).candles[::-1]  # fmt: skip
                bars += span.page(
                    symbol=ticker, start=start or c.EARLIEST, end=end or c.LATEST,
                    limit=limit + warmup,
                ).candles  # fmt: skip
        x = np.array([getattr(bar, series) for bar in bars], dtype=np.float64)
        columns = [column.tolist() for column in self.values(x, windows)]
        rows = []
        for i, bar in enumerate(bars):
            if columns[0][i] != columns[0][i] or (start is not None and bar.ts < start):
                continue  # NaN: no value yet; or before the window asked for
            if end is not None and bar.ts >= end:
                continue
            row = {"timestamp": p.ms_of(bar.ts), "value": columns[0][i]}
            if self.kind == "macd":
                row.update(signal=columns[1][i], histogram=columns[2][i])
            rows.append(row)
        rows = rows[-limit:][::-1] if order == "desc" else rows[:limit]
        return self.answer({"results": {"underlying": self.underlying(ticker, timespan, bars,
                                                                       expand),
                                        "values": rows}})  # fmt: skip

    def underlying(self, ticker: str, timespan: str, bars: list, expand: bool) -> dict:
        """The aggregates the values were computed over: their `url`, and the bars
        themselves with expand_underlying=true."""
        if bars:
            span = f"{p.ms_of(bars[0].ts)}/{p.ms_of(bars[-1].ts)}"
        else:
            span = f"{p.ms_of(c.EARLIEST)}/{p.ms_of(c.LATEST) - 1}"
        url = self.request.build_absolute_uri(
            f"/v2/aggs/ticker/{ticker}/range/1/{timespan}/{span}?limit={max(len(bars), 1)}&sort=asc"
        )
        out: dict = {"url": url}
        if expand:
            out["aggregates"] = [m.agg(bar) for bar in bars]
        return out


def _indicator_parameters(windows: list[OpenApiParameter]) -> list[OpenApiParameter]:
    return [
        SYMBOL,
        _query("timespan", description="The aggregates' unit: minute, hour, day (default), "
               "week, month, quarter or year.", enum=list(c.INDICATOR_TIMESPANS)),
        *windows,
        _query("series_type", description="The bar price used: close (default), open, high "
               "or low.", enum=list(_SERIES_TYPES)),
        _query("timestamp", description="Values of that UTC day (YYYY-MM-DD) or at that "
               "Unix ms (Unix ns from 1e17 on)."),
        *[_query(name, description="A date YYYY-MM-DD, Unix ms or Unix ns.")
          for name in _TS_BOUNDS],
        _query("order", description="desc (default) or asc, by timestamp.",
               enum=["asc", "desc"]),
        _query("limit", OpenApiTypes.INT,
               f"Values, 1-{c.INDICATOR_LIMIT_MAX} (default {c.INDICATOR_LIMIT_DEFAULT})."),
        _query("expand_underlying", OpenApiTypes.BOOL,
               "true: the aggregates used, in `underlying.aggregates`."),
        ADJUSTED,
    ]  # fmt: skip


def _window(name: str, default: int, low: int = 2) -> OpenApiParameter:
    return _query(name, OpenApiTypes.INT,
                  f"Bars, {low}-{c.INDICATOR_WINDOW_MAX} (default {default}).")  # fmt: skip


_URL = "http://127.0.0.1:8000/v2/aggs/ticker/AAPL/range/1/day/1791936000000/1796169600000"
_VALUE = {"timestamp": 1796169600000, "value": 189.4123}


def _indicator_schema(kind: str, windows: list[OpenApiParameter], value: dict):
    return extend_schema(
        operation_id=f"polygon_{kind}",
        examples=_example(
            "The newest value",
            {"results": {"underlying": {"url": f"{_URL}?limit=50&sort=asc"}, "values": [value]}},
        ),
        parameters=_indicator_parameters(windows),
        responses={200: s.MACDAnswerSerializer if kind == "macd" else s.IndicatorAnswerSerializer,
                   **_ERRORS_400},
        **_GATEWAY,
    )  # fmt: skip


class SMA(IndicatorView):
    kind = "sma"
    windows = (("window", 50, 2),)

    @_indicator_schema("sma", [_window("window", 50)], _VALUE)
    def get(self, request: Request, symbol: str):
        return super().get(request, symbol)


class EMA(IndicatorView):
    kind = "ema"
    windows = (("window", 50, 2),)

    @_indicator_schema("ema", [_window("window", 50)], _VALUE)
    def get(self, request: Request, symbol: str):
        return super().get(request, symbol)


class RSI(IndicatorView):
    kind = "rsi"
    windows = (("window", 14, 2),)

    @_indicator_schema("rsi", [_window("window", 14)], {**_VALUE, "value": 56.21})
    def get(self, request: Request, symbol: str):
        return super().get(request, symbol)


class MACD(IndicatorView):
    kind = "macd"
    windows = (("short_window", 12, 2), ("long_window", 26, 2), ("signal_window", 9, 1))

    @_indicator_schema(
        "macd",
        [_window("short_window", 12), _window("long_window", 26),
         _window("signal_window", 9, low=1)],
        {**_VALUE, "value": 1.27, "signal": 0.98, "histogram": 0.29},
    )  # fmt: skip
    def get(self, request: Request, symbol: str):
        return super().get(request, symbol)


@extend_schema(exclude=True)
class NoSuchPath(GatewayView):
    """Any other path under /v1, /v2, /v3: a 404 in the vendor's JSON shape (a program
    reads JSON; the site's HTML 404 page is for people)."""

    def get(self, request: Request, *args, **kwargs) -> Response:
        raise NotFound(f"no such path: {request.path} (docs/polygon.md lists what is served)")

    post = put = patch = delete = get
