"""Server-rendered pages: thin views over `apps.dashboard.selectors` (docs/architecture.md)."""

from __future__ import annotations

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse

from apps.dashboard import selectors


def home(request: HttpRequest) -> HttpResponse:
    """The market overview, painted with live values from the hot state."""
    return render(request, "dashboard/home.html", selectors.overview_page())


def sparklines(request: HttpRequest) -> HttpResponse:
    """The market page's sparklines of the rows scrolled into view: `?symbols=A,B` (up to
    MAX_SPARKLINE_SYMBOLS) answers `{"minutes", "sparklines": {symbol: {start, closes}}}`."""
    found = selectors.page_sparklines(request.GET.get("symbols", ""))
    if found is None:
        limit = selectors.MAX_SPARKLINE_SYMBOLS
        return JsonResponse({"symbols": [f"1 to {limit} tickers, comma-separated"]}, status=400)
    return JsonResponse({"minutes": selectors.SPARKLINE_MINUTES, "sparklines": found})


def symbol(request: HttpRequest, symbol: str) -> HttpResponse:
    """One symbol: chart, studies and the live panel; 404 for anything not a symbol."""
    ticker = selectors.canonical_ticker(symbol)
    # The chart's interval and overlays come from the query string (the page keeps them
    # there), so a reload or a shared link shows the same chart; anything unknown: defaults.
    interval = request.GET.get("interval", "")
    if interval not in selectors.CHART_INTERVALS:
        interval = selectors.FIRST_PAINT_INTERVAL
    asked = request.GET.get("overlays")
    overlays = (
        selectors.DEFAULT_OVERLAYS
        if asked is None
        else {name for name in asked.split(",") if name in selectors.OVERLAYS}
    )
    page = (  # no query for a malformed ticker
        selectors.symbol_page(ticker, interval=interval, overlays=overlays) if ticker else None
    )
    if page is None:
        raise Http404("No such symbol")
    return render(request, "dashboard/symbol.html", page)


def search(request: HttpRequest) -> HttpResponse:
    """The header search without JavaScript: `/stocks/?q=aapl` goes to `/stocks/AAPL/`, and
    so does a name only one symbol matches (`?q=apple`); several matches are listed."""
    query = request.GET.get("q", "").strip()
    matches = selectors.symbol_search(query)
    exact = [m for m in matches if m["ticker"] == query.upper()]
    if exact or len(matches) == 1:
        return HttpResponseRedirect(reverse("stock", args=[(exact or matches)[0]["ticker"]]))
    if not matches:
        raise Http404("No such symbol")
    return render(request, "dashboard/search.html", {"query": query, "matches": matches})


def favicon(request: HttpRequest) -> HttpResponse:
    """Pages without our `<link rel="icon">` (the admin, ReDoc) make browsers ask for
    /favicon.ico: the site's icon. (Resolved per request: in production the static
    manifest, which names the file, exists only once collectstatic has run.)"""
    return HttpResponsePermanentRedirect(static("favicon.svg"))
