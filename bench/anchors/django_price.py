"""bench/api.py's plain-Django anchor: the same `/price` read (one Redis GET of the hot
state) in a Django project with nothing else: no apps, no middleware, no DRF, a
`JsonResponse`. Served by the same WSGI server and process counts as MarketFlux, it is what
Django itself costs per request there.

    granian --interface wsgi bench.anchors.django_price:application   (REDIS_URL of the bench)
"""

from __future__ import annotations

import os

import orjson
import redis
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-anchor-only-not-a-site-0123456789-0123456789",  # noqa: S106
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import Http404, HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from apps.market import keys  # noqa: E402 (names only)

FIELDS = ("price", "ts", "change", "change_pct", "volume")
_redis = redis.Redis.from_url(os.environ["REDIS_URL"])


def price(request: HttpRequest, symbol: str) -> JsonResponse:
    ticker = symbol.upper()
    blob = _redis.get(keys.hot(ticker))
    if blob is None:
        raise Http404(f"Unknown symbol: {symbol!r}.")
    hot = orjson.loads(blob)
    return JsonResponse({"symbol": ticker, **{f: hot.get(f) for f in FIELDS}})


urlpatterns = [path("api/v1/stocks/<str:symbol>/price", price)]
application = get_wsgi_application()
