"""Server-rendered pages: thin views over `apps.dashboard.selectors` (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
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

from apps.accounts import roles
from apps.dashboard import ops as ops_selectors
from apps.dashboard import selectors

# Market pages: with MARKETFLUX_PUBLIC_READ=0 an anonymous visitor is sent to the login
# page (a redirect with an empty body: nothing of the market), a signed-in user whose role
# reads no market gets a 403 (docs/security.md#roles).
market_page = roles.page_requires(roles.READ_MARKET)


@market_page
def home(request: HttpRequest) -> HttpResponse:
    """The market overview, painted with live values from the hot state."""
    return render(request, "dashboard/home.html", selectors.overview_page())


def sparklines(request: HttpRequest) -> HttpResponse:
    """The market page's sparklines of the rows scrolled into view: `?symbols=A,B` (up to
    MAX_SPARKLINE_SYMBOLS) answers `{"minutes", "sparklines": {symbol: {start, closes}}}`.
    A script's JSON, so a refusal is a JSON 401 or 403 like the API's, not the login page."""
    if not roles.may(request.user, roles.READ_MARKET):
        if request.user.is_authenticated:
            return JsonResponse({"detail": "Your role does not allow market data."}, status=403)
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
    found = selectors.page_sparklines(request.GET.get("symbols", ""))
    if found is None:
        limit = selectors.MAX_SPARKLINE_SYMBOLS
        return JsonResponse({"symbols": [f"1 to {limit} tickers, comma-separated"]}, status=400)
    return JsonResponse({"minutes": selectors.SPARKLINE_MINUTES, "sparklines": found})


@market_page
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


@market_page
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


def status_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The status page's door, as the admin's: whoever is not staff goes to the admin's
    login page (which tells a signed-in user they are not authorised there); staff whose
    role does not allow the page get a 403 (the login page would send them straight back)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if roles.may(request.user, roles.VIEW_STATUS):
            return view(request, *args, **kwargs)
        if request.user.is_active and request.user.is_staff:
            raise PermissionDenied("Your role does not allow the status page.")
        return redirect_to_login(request.get_full_path(), "admin:login")

    return guarded


@never_cache
@require_GET
@status_page
def ops(request: HttpRequest) -> HttpResponse:
    """The operators' status page (docs/operations.md#the-status-page): ingest, stages,
    sockets, sources and errors, for those who run no Grafana; operators and admins."""
    status = ops_selectors.ops_status()
    stages = [
        {"name": name, **ms} for name, ms in (status["ingest"] or {}).get("stages_ms", {}).items()
    ]
    return render(request, "dashboard/ops.html", {"status": status, "stages": stages})


@never_cache
@require_GET
def ops_status(request: HttpRequest) -> JsonResponse:
    """The status page's numbers, polled by static/js/ops.js; 403 for anyone whose role does
    not allow the status page (a script polling it wants an answer, not the login page)."""
    if not roles.may(request.user, roles.VIEW_STATUS):
        return JsonResponse({"detail": "operators only"}, status=403)
    return JsonResponse(ops_selectors.ops_status())
