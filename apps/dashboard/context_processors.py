"""Template context every page of the site layout needs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from apps.dashboard import selectors


def site(request: HttpRequest) -> dict:
    """The header's search suggestions (tickers and names), queried only when a template
    uses them; and the port the pages open WebSockets on when it is not their own
    (`make run` without a proxy: docs/operations.md#serving).

    A callable: Django templates call it on first use, so pages outside the site layout
    (the admin, the API) pay nothing.
    """
    return {"nav_symbols": selectors.nav_symbols, "ws_port": settings.MARKETFLUX_WS_PORT}
