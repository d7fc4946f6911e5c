from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.market.selectors import symbols_with_last_tick


def home(request: HttpRequest) -> HttpResponse:
    """The market at a glance, rendered from the database on the server."""
    return render(request, "dashboard/home.html", {"symbols": symbols_with_last_tick()})
