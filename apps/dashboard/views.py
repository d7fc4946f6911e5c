"""Server-rendered pages: thin views over `apps.dashboard.selectors` (docs/architecture.md)."""

from __future__ import annotations

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse

from apps.dashboard import selectors


def home(request: HttpRequest) -> HttpResponse:
    """The market overview, painted with live values from the hot state."""
    return render(request, "dashboard/home.html", selectors.overview_page())


def symbol(request: HttpRequest, symbol: str) -> HttpResponse:
    """One symbol: chart, studies and the live panel; 404 for anything not a symbol."""
    ticker = selectors.canonical_ticker(symbol)
    page = selectors.symbol_page(ticker) if ticker else None  # no query for a malformed one
    if page is None:
        raise Http404("No such symbol")
    return render(request, "dashboard/symbol.html", page)


def search(request: HttpRequest) -> HttpResponse:
    """The header search without JavaScript: `/stocks/?q=aapl` goes to `/stocks/AAPL/`."""
    ticker = selectors.canonical_ticker(request.GET.get("q", "").strip())
    if ticker is None:
        raise Http404("No such symbol")
    return HttpResponseRedirect(reverse("stock", args=[ticker]))


def favicon(request: HttpRequest) -> HttpResponse:
    """Pages without our `<link rel="icon">` (the admin, ReDoc) make browsers ask for
    /favicon.ico: the site's icon. (Resolved per request: in production the static
    manifest, which names the file, exists only once collectstatic has run.)"""
    return HttpResponsePermanentRedirect(static("favicon.svg"))
