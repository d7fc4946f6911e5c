"""The market data API (docs/contracts.md#rest-api): thin viewsets over selectors, answers
built by `apps.market.messages`, registered in `apps/api/router.py`; and the caller's own token."""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import tokens
from apps.accounts.models import ApiToken
from apps.accounts.tokens import TokenScopes
from apps.api import serializers as s
from apps.api.filters import FilterBackend, SymbolFilter
from apps.api.permissions import MarketDataPermission, OwnTokensPermission
from apps.api.query import CheckedQuery
from apps.indicators.selectors import recent_snapshots
from apps.market import messages, selectors
from apps.market.models import TICKER_PATTERN, Symbol

_TS = "2026-12-02T15:04:05.500000Z"
_INDICATORS_EXAMPLE = {
    "sma_20": 189.93, "ema_20": 189.95, "rsi_14": 57.1, "zscore_20": 1.2, "anomaly": False,
    "macd": 0.031, "macd_signal": 0.024, "macd_hist": 0.007,
    "bb_upper": 190.41, "bb_middle": 189.93, "bb_lower": 189.45,
}  # fmt: skip
# Answers every market data endpoint may give besides its 200.
_ERRORS = {
    401: OpenApiResponse(s.DetailSerializer, description="MARKETFLUX_PUBLIC_READ=0 and no login."),
    403: OpenApiResponse(
        s.DetailSerializer, description="MARKETFLUX_PUBLIC_READ=0 and your role reads no market."
    ),
    429: OpenApiResponse(s.DetailSerializer, description="Throttled: see Retry-After."),
}
_NOT_FOUND = {404: OpenApiResponse(s.DetailSerializer, description="Unknown symbol.")}
_BAD_PARAMETERS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="A parameter is invalid: each invalid parameter maps to its messages.",
        examples=[
            OpenApiExample(
                "limit out of range",
                value={"limit": ["Ensure this value is less than or equal to 5000."]},
                status_codes=["400"],
            )
        ],
    )
}


def answers(ok, *extra: dict) -> dict:
    """The documented answers of an endpoint: its 200, its own errors, the common ones."""
    out = {200: ok, **_ERRORS}
    for more in extra:
        out.update(more)
    return out


SYMBOL_PARAMETER = OpenApiParameter(
    "symbol", OpenApiTypes.STR, OpenApiParameter.PATH, description="Ticker, any case."
)


def find_symbol(raw: str) -> tuple[str, dict | None]:
    """The ticker a path names (any case) and its hot state; 404 for anything unknown.

    A symbol with a hot state exists (deleting a symbol deletes its hot state), so the
    common case costs one Redis read and no query; only a symbol without ticks yet, or an
    unknown one, is looked up in the database.
    """
    ticker = raw.upper()
    if TICKER_PATTERN.match(ticker):
        hot = selectors.hot_states([ticker])[ticker]
        if hot is not None or Symbol.objects.filter(ticker=ticker).exists():
            return ticker, hot
    raise NotFound(f"Unknown symbol: {raw[:32]!r}.")


def validated(query: type[s.serializers.Serializer], request: Request) -> dict:
    """The query parameters, checked; a bad one is a 400 naming it.

    A plain dict, not the QueryDict: DRF reads an empty form value as "not given" and would
    answer `?interval=` with the default, where an empty value is malformed.
    """
    params = query(data=request.query_params.dict())
    if not params.is_valid():
        raise ValidationError(params.errors)
    return params.validated_data


def symbol_action(url_path: str):
    """A GET route under `stocks/{symbol}/`. It neither filters nor pages: those are the
    list's, and would otherwise put the list's filter form on its browsable page."""
    return action(
        detail=True,
        methods=["get"],
        url_path=url_path,
        filter_backends=[],
        pagination_class=None,
    )


class StockViewSet(CheckedQuery, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The symbols (`stocks`) and, per symbol (any case), its latest price and indicators,
    its tick and indicator history and its OHLCV bars."""

    # Roles here; a token's scopes are checked by apps.accounts.tokens.TokenScopes.
    permission_classes = [MarketDataPermission, TokenScopes]
    serializer_class = s.StockSerializer
    filter_backends = [FilterBackend]
    filterset_class = SymbolFilter
    queryset = Symbol.objects.order_by("ticker")
    # `{symbol}` in the paths; `find_symbol` reads it (any case), never `get_object`.
    lookup_field = "ticker"
    lookup_url_kwarg = "symbol"
    lookup_value_regex = "[^/]+"  # not the default `[^/.]+`: "a.b" gets find_symbol's JSON 404

    @extend_schema(
        operation_id="stocks_list",
        responses=answers(
            s.StockSerializer(many=True),
            _BAD_PARAMETERS,
            {404: OpenApiResponse(s.DetailSerializer, description="No such page.")},
        ),
        examples=[
            OpenApiExample(
                "A stock",
                response_only=True,
                value={
                    "symbol": "AAPL",
                    "name": "Apple Inc.",
                    "exchange": "NASDAQ",
                    "sector": "Technology",
                    "active": True,
                    "price": 190.12,
                    "change": 1.02,
                    "change_pct": 0.54,
                    "volume": 1843200,
                    "updated_at": _TS,
                },
            )
        ],
    )
    def list(self, request: Request, *args, **kwargs) -> Response:
        """Every symbol with its latest price (from the pipeline's hot state)."""
        page = self.paginate_queryset(
            self.filter_queryset(self.get_queryset()).values(
                "ticker", "name", "exchange", "sector", "active"
            )
        )
        hot = selectors.hot_states([row["ticker"] for row in page])
        return self.get_paginated_response(
            [messages.stock(row, hot[row["ticker"]]) for row in page]
        )

    @extend_schema(
        operation_id="stocks_price",
        parameters=[SYMBOL_PARAMETER],
        responses=answers(s.PriceSerializer, _NOT_FOUND),
        examples=[
            OpenApiExample(
                "Latest price",
                value={
                    "symbol": "AAPL",
                    "price": 190.12,
                    "ts": _TS,
                    "change": 1.02,
                    "change_pct": 0.54,
                    "volume": 1843200,
                },
            )
        ],
    )
    @symbol_action("price")
    def price(self, request: Request, symbol: str) -> Response:
        """The latest price, with the UTC day's change and volume."""
        ticker, hot = find_symbol(symbol)
        return Response(messages.price(ticker, hot))

    @extend_schema(
        operation_id="stocks_history",
        parameters=[SYMBOL_PARAMETER, s.LimitQuery],
        responses=answers(s.HistorySerializer, _NOT_FOUND, _BAD_PARAMETERS),
        examples=[
            OpenApiExample(
                "The last two ticks",
                value={
                    "symbol": "AAPL",
                    "count": 2,
                    "results": [
                        {
                            "ts": "2026-12-02T15:04:05Z",
                            "price": 190.1,
                            "size": 100,
                            "bid": 190.08,
                            "ask": 190.11,
                            "bid_size": 300,
                            "ask_size": 500,
                        },
                        {
                            "ts": _TS,
                            "price": 190.12,
                            "size": 37,
                            "bid": 190.1,
                            "ask": 190.13,
                            "bid_size": 200,
                            "ask_size": 100,
                        },
                    ],
                },
            )
        ],
    )
    @symbol_action("history")
    def history(self, request: Request, symbol: str) -> Response:
        """The last `limit` ticks, oldest first."""
        ticker, _ = find_symbol(symbol)
        limit = validated(s.LimitQuery, request)["limit"]
        ticks = selectors.recent_ticks(ticker, limit)
        return Response(messages.series(ticker, [messages.history_tick(*t) for t in ticks]))

    @extend_schema(
        operation_id="stocks_indicators",
        parameters=[SYMBOL_PARAMETER],
        responses=answers(s.IndicatorsSerializer, _NOT_FOUND),
        examples=[
            OpenApiExample(
                "Latest indicators",
                value={
                    "symbol": "AAPL",
                    "ts": _TS,
                    "price": 190.12,
                    "anomaly_threshold": 3.0,
                    **_INDICATORS_EXAMPLE,
                },
            )
        ],
    )
    @symbol_action("indicators")
    def indicators(self, request: Request, symbol: str) -> Response:
        """Every indicator (docs/contracts.md#indicators) at the latest tick, null if not warm."""
        ticker, hot = find_symbol(symbol)
        if hot is None:  # no tick yet: the threshold comes from the symbol itself
            threshold = Symbol.objects.get(ticker=ticker).anomaly_threshold
        else:
            threshold = hot["anomaly_threshold"]
        return Response(messages.indicators(ticker, hot, anomaly_threshold=threshold))

    @extend_schema(
        operation_id="stocks_indicators_history",
        parameters=[SYMBOL_PARAMETER, s.LimitQuery],
        responses=answers(s.IndicatorHistorySerializer, _NOT_FOUND, _BAD_PARAMETERS),
        examples=[
            OpenApiExample(
                "The last snapshot",
                value={
                    "symbol": "AAPL",
                    "count": 1,
                    "results": [{"ts": _TS, "price": 190.12, **_INDICATORS_EXAMPLE}],
                },
            )
        ],
    )
    @symbol_action("indicators/history")
    def indicator_history(self, request: Request, symbol: str) -> Response:
        """The last `limit` indicator snapshots, oldest first."""
        ticker, _ = find_symbol(symbol)
        limit = validated(s.LimitQuery, request)["limit"]
        rows = recent_snapshots(ticker, limit)
        return Response(
            messages.series(
                ticker, [messages.indicator_snapshot(r["ts"], r["price"], r) for r in rows]
            )
        )

    @extend_schema(
        operation_id="stocks_bars",
        parameters=[SYMBOL_PARAMETER, s.BarsQuery],
        responses=answers(s.BarsSerializer, _NOT_FOUND, _BAD_PARAMETERS),
        examples=[
            OpenApiExample(
                "One hourly candle",
                value={
                    "symbol": "AAPL",
                    "count": 1,
                    "results": [
                        {
                            "ts": "2026-12-02T15:00:00Z",
                            "open": 189.7,
                            "high": 190.4,
                            "low": 189.5,
                            "close": 190.12,
                            "volume": 812345,
                            "trades": 7200,
                        },
                    ],
                },
            )
        ],
    )
    @symbol_action("bars")
    def bars(self, request: Request, symbol: str) -> Response:
        """OHLCV candles, oldest first; the still-open bucket included."""
        ticker, _ = find_symbol(symbol)
        query = validated(s.BarsQuery, request)
        candles = selectors.bars_for_range(
            symbol=ticker,
            interval=query["interval"],
            limit=query["limit"],
            start=query.get("start"),
            end=query.get("end"),
        )
        return Response(
            messages.series(
                ticker,
                [
                    messages.candle(c.ts, c.open, c.high, c.low, c.close, c.volume, c.trades)
                    for c in candles
                ],
            )
        )


class MarketOverviewViewSet(CheckedQuery, viewsets.ViewSet):
    """The market at a glance (`market/overview`): one answer, not a list of rows."""

    # Roles here; a token's scopes are checked by apps.accounts.tokens.TokenScopes.
    permission_classes = [MarketDataPermission, TokenScopes]

    @extend_schema(
        operation_id="market_overview",
        responses=answers(s.OverviewSerializer),
        examples=[
            OpenApiExample(
                "Two symbols",
                value=messages.overview(
                    {
                        "AAPL": {
                            "price": 190.12,
                            "change_pct": 0.54,
                            "volume": 1843200,
                            "indicators": _INDICATORS_EXAMPLE,
                        },
                        "TSLA": {
                            "price": 241.3,
                            "change_pct": -1.2,
                            "volume": 2210400,
                            "indicators": {**_INDICATORS_EXAMPLE, "anomaly": True},
                        },
                    },
                    now=datetime(2026, 12, 2, 15, 4, 6, tzinfo=UTC),
                ),
            )
        ],
    )
    def list(self, request: Request) -> Response:
        """Every active symbol at a glance: movers, breadth and anomalies."""
        return Response(selectors.market_overview())


_TOKEN_EXAMPLE = OpenApiExample(
    "A new token",
    value={"token": "mfx_4Jx0a8cQfB2m9XkqVZ7d1TnYwP3sLhR6uE5gKoNiAcM", "created": _TS},
    response_only=True,
)
_TOKEN_SHOWN = OpenApiExample(
    "A token made earlier", value={"token": None, "created": _TS}, response_only=True
)


class OwnToken(CheckedQuery, APIView):
    """Your default API token, for programs: `Authorization: Token <key>` or `?token=` on
    WebSockets. POST creates it (replacing any old one) and answers its key, once: only a
    digest of it is stored, so GET tells when it was made, not the key. DELETE revokes it.
    Named tokens with narrower scopes: `/api/v1/tokens/`.
    """

    # Roles here; a token's scopes are checked by apps.accounts.tokens.TokenScopes.
    permission_classes = [OwnTokensPermission, TokenScopes]
    token_read_scope = token_write_scope = ApiToken.ADMIN  # managing tokens is admin's
    serializer_class = s.TokenSerializer

    @extend_schema(
        operation_id="auth_token_show",
        responses={200: s.TokenSerializer, 401: s.DetailSerializer, 403: s.DetailSerializer},
        examples=[_TOKEN_SHOWN],
    )
    def get(self, request: Request) -> Response:
        token = tokens.default_token(request.user)
        return Response({"token": None, "created": token.created if token else None})

    @extend_schema(
        operation_id="auth_token_create",
        request=None,
        responses={201: s.TokenSerializer, 401: s.DetailSerializer, 403: s.DetailSerializer},
        examples=[_TOKEN_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        token, key = tokens.default_token_replace(request.user)
        return Response(
            {"token": key, "created": token.created},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )

    @extend_schema(
        operation_id="auth_token_revoke",
        responses={204: None, 401: s.DetailSerializer, 403: s.DetailSerializer},
    )
    def delete(self, request: Request) -> Response:
        tokens.default_token_delete(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
