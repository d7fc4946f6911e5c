"""Template context every page of the site layout needs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from apps.accounts import roles
from apps.dashboard import selectors


def site(request: HttpRequest) -> dict:
    """The header's search suggestions (tickers and names), queried only when a template
    uses them; and the port the pages open WebSockets on when it is not their own
    (`make run` without a proxy: docs/operations.md#serving).

    A callable: Django templates call it on first use, so pages outside the site layout
    (the admin, the API) pay nothing. Nothing for a visitor who may not read the market (the
    login page in private mode): the suggestions list every ticker and company.
    """
    return {"nav_symbols": lambda: _nav_symbols(request), "ws_port": settings.MARKETFLUX_WS_PORT}


def _nav_symbols(request: HttpRequest) -> tuple | list:
    if not roles.may(getattr(request, "user", None), roles.READ_MARKET):
        return ()
    return selectors.nav_symbols()
