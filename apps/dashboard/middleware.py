"""The site's own 404 page while DEBUG is on, which is how `make run` serves users."""

from __future__ import annotations

from collections.abc import Callable

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.defaults import page_not_found


class SiteNotFoundPage:
    """With DEBUG on, Django answers every HTML 404 with its yellow technical page (the URL
    patterns, the exception). `make run` runs with DEBUG on, for tracebacks in the log, and
    is what users run: they get the site's page. `MARKETFLUX_DEBUG_404=1` keeps Django's.
    JSON answers (the API's 404s) pass untouched."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.replace = settings.DEBUG and not settings.MARKETFLUX_DEBUG_404

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            self.replace
            and response.status_code == 404
            and response.get("Content-Type", "").startswith("text/html")
        ):
            return page_not_found(request, Http404())
        return response


class PageCSPMiddleware(CSPMiddleware):
    """django-csp's Content-Security-Policy on HTML answers only
    (docs/security.md#headers-and-the-content-security-policy).

    A policy governs a document and what it loads; a JSON or CSV answer runs nothing (every
    answer carries `X-Content-Type-Options: nosniff`, so no browser takes one for a page).
    The stock middleware builds the policy string for every answer, the API's too, and the
    lean path (apps/api/lean.py), which answers before it, would differ from the full path
    by that header."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)
