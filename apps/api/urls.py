"""/api/v1/ routes. Every path answers with and without its trailing slash (no redirect)."""

from __future__ import annotations

from django.urls import re_path

from apps.api import alerts, views


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}/?$", view.as_view(), name=name)


_SYMBOL = r"stocks/(?P<symbol>[^/]+)"

urlpatterns = [
    route("stocks", views.StockList, "stock-list"),
    route(f"{_SYMBOL}/price", views.StockPrice, "stock-price"),
    route(f"{_SYMBOL}/history", views.StockHistory, "stock-history"),
    route(f"{_SYMBOL}/indicators", views.StockIndicators, "stock-indicators"),
    route(f"{_SYMBOL}/indicators/history", views.StockIndicatorHistory, "stock-indicator-history"),
    route(f"{_SYMBOL}/bars", views.StockBars, "stock-bars"),
    route("market/overview", views.MarketOverview, "market-overview"),
    route("auth/token", views.OwnToken, "auth-token"),
    route("alerts/rules", alerts.RuleList, "alert-rule-list"),
    route(r"alerts/rules/(?P<id>[^/]+)", alerts.RuleDetail, "alert-rule-detail"),
    route("alerts/events", alerts.EventList, "alert-event-list"),
    # Before the event detail route, whose {id} would otherwise match "acknowledge".
    route("alerts/events/acknowledge", alerts.EventsAcknowledge, "alert-event-acknowledge-many"),
    route(r"alerts/events/(?P<id>[^/]+)", alerts.EventDetail, "alert-event-detail"),
    route(r"alerts/events/(?P<id>[^/]+)/acknowledge", alerts.EventAcknowledge, "alert-event-ack"),
]
