"""Server-rendered pages: thin views over `apps.dashboard.selectors` (docs/architecture.md)."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
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
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.dashboard import ops as ops_selectors
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


@never_cache
@require_GET
@staff_member_required  # as the admin: anyone else goes to its login page
def ops(request: HttpRequest) -> HttpResponse:
    """The operators' status page (docs/operations.md#the-status-page): ingest, stages,
    sockets, sources and errors, for those who run no Grafana; staff only."""
    status = ops_selectors.ops_status()
    stages = [
        {"name": name, **ms} for name, ms in (status["ingest"] or {}).get("stages_ms", {}).items()
    ]
    return render(request, "dashboard/ops.html", {"status": status, "stages": stages})


@never_cache
@require_GET
def ops_status(request: HttpRequest) -> JsonResponse:
    """The status page's numbers, polled by static/js/ops.js; 403 for anyone but staff
    (a script polling it wants an answer, not the login page)."""
    if not (request.user.is_active and request.user.is_staff):
        return JsonResponse({"detail": "staff only"}, status=403)
    return JsonResponse(ops_selectors.ops_status())
