"""The gateway's paths, at the root as the vendor's clients build them (docs/polygon.md).
No trailing slash, as the vendor's; any other path under /v1-/v3 is a JSON 404."""

from __future__ import annotations

from django.urls import re_path

from apps.polygon import views

_T = r"(?P<symbol>[^/]+)"

urlpatterns = [
    re_path(
        rf"^v2/aggs/ticker/{_T}/range/(?P<multiplier>[^/]+)/(?P<timespan>[^/]+)/"
        r"(?P<from>[^/]+)/(?P<to>[^/]+)$",
        views.Aggregates.as_view(),
        name="polygon-aggs",
    ),
    re_path(rf"^v2/aggs/ticker/{_T}/prev$", views.PreviousClose.as_view(), name="polygon-prev"),
    re_path(
        r"^v2/aggs/grouped/locale/us/market/stocks/(?P<date>[^/]+)$",
        views.GroupedDaily.as_view(),
        name="polygon-grouped",
    ),
    re_path(rf"^v2/last/trade/{_T}$", views.LastTrade.as_view(), name="polygon-last-trade"),
    re_path(rf"^v2/last/nbbo/{_T}$", views.LastQuote.as_view(), name="polygon-last-quote"),
    re_path(rf"^v3/trades/{_T}$", views.Trades.as_view(), name="polygon-trades"),
    re_path(r"^v3/reference/tickers$", views.Tickers.as_view(), name="polygon-tickers"),
    re_path(
        rf"^v3/reference/tickers/{_T}$",
        views.TickerDetails.as_view(),
        name="polygon-ticker-details",
    ),
    re_path(
        r"^v2/snapshot/locale/us/markets/stocks/tickers$",
        views.SnapshotAll.as_view(),
        name="polygon-snapshot-all",
    ),
    re_path(
        rf"^v2/snapshot/locale/us/markets/stocks/tickers/{_T}$",
        views.SnapshotTicker.as_view(),
        name="polygon-snapshot-ticker",
    ),
    *[
        re_path(rf"^v1/indicators/{kind}/{_T}$", view.as_view(), name=f"polygon-{kind}")
        for kind, view in (
            ("sma", views.SMA),
            ("ema", views.EMA),
            ("rsi", views.RSI),
            ("macd", views.MACD),
        )
    ],
    re_path(r"^v[123]/", views.NoSuchPath.as_view()),  # last: what the paths above do not match
]
