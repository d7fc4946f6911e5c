"""A lean path for the hottest read-only GETs: `/api/v1/stocks/{symbol}/price` and
`/indicators` from an anonymous caller while market data is public.

Why: a profile of `/price` under WSGI (docs/operations.md#per-request-cost) spent about a
third of a request in the middleware chain (sessions, CSRF, messages, ...) and DRF's
dispatch (content negotiation, authentication, permission, Response and renderer), and
made two Redis round trips (the throttle's counter, then the hot state). None of that
changes the answer of an anonymous JSON read of the hot state. So this middleware, placed
right after SecurityMiddleware, answers such a request itself with the same body and
headers as the full path, in one Redis round trip: the anonymous throttle's commands and
the hot state's GET in one pipeline.

It answers only when every documented rule would let the request through unchanged:

- GET, no query string, JSON wanted (no Accept, `*/*` or `application/json`, no
  parameters: a browser's `text/html` gets the browsable API);
- no credentials at all (no `Authorization` header, no session cookie) and
  MARKETFLUX_PUBLIC_READ on: the anonymous throttle is the only one that applies;
- a well-formed ticker with a hot state, and the anonymous client still within its rate.

Anything else (an unknown symbol's 404, a symbol without ticks yet, a 429, a login, a
token) goes down the full path unchanged. The throttle counter this path already
incremented travels with the request (`COUNTED_ATTR`), so `apps.api.throttles` does not
count the request a second time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import orjson
import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import resolve

from apps.api.renderers import FastJSONRenderer
from apps.api.throttles import COUNTED_ATTR, AnonThrottle, window_commands
from apps.market import keys, messages
from apps.market.models import TICKER_PATTERN
from apps.ops.metrics import ROUTE_ATTR, route_template
from apps.ops.redis_client import execute_packed, redis_client

# The routes of apps/api/router.py this path serves (each with and without its slash).
LEAN_ROUTE = re.compile(r"^/api/v1/stocks/(?P<symbol>[^/]+)/(?P<what>price|indicators)/?$")
_JSON_ACCEPTS = frozenset({"*/*", "application/json", "application/*"})
# What DRF and the middleware below this one add to such an answer (checked by
# apps/api/tests/test_lean.py against the full path).
_VARY = "Accept, Cookie"
_ALLOW = "GET, HEAD, OPTIONS"


@functools.cache
def _route(what: str) -> str:
    """The route template the full path would have counted this request under (/metrics)."""
    return route_template(resolve(f"/api/v1/stocks/AAPL/{what}"))


def _wants_plain_json(accept: str) -> bool:
    """Whether DRF's negotiation would pick FastJSONRenderer with no indent."""
    if not accept:
        return True
    return all(part.strip() in _JSON_ACCEPTS for part in accept.split(","))


class LeanReadMiddleware:
    """Answers the hot-state reads described in the module docstring; passes the rest on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        answer = self._answer(request)
        return answer if answer is not None else self.get_response(request)

    def _answer(self, request: HttpRequest) -> HttpResponse | None:
        if request.method != "GET":
            return None
        match = LEAN_ROUTE.match(request.path_info)
        if match is None or not settings.MARKETFLUX_PUBLIC_READ:
            return None
        meta = request.META
        if (
            meta.get("QUERY_STRING")
            or "HTTP_AUTHORIZATION" in meta
            or settings.SESSION_COOKIE_NAME in request.COOKIES
            or not _wants_plain_json(meta.get("HTTP_ACCEPT", ""))
        ):
            return None
        ticker = match["symbol"].upper()
        if not TICKER_PATTERN.match(ticker):
            return None  # the full path's 404
        throttle = AnonThrottle()
        commands: list[list[bytes]] = []
        key = None
        if throttle.rate is not None:
            key = keys.throttle(throttle.scope, throttle.get_ident(request))
            commands += window_commands(key, throttle.duration)
        commands.append([b"GET", keys.hot(ticker).encode()])
        try:
            replies = execute_packed(redis_client(), commands)
        except redis.RedisError:
            return None  # the full path raises or answers as it always has
        blob = replies[-1]
        if key is not None:
            count, ttl_ms = replies[1], replies[2]
            setattr(request, COUNTED_ATTR, {key: (count, ttl_ms)})
            if count > throttle.num_requests:
                return None  # the full path answers 429 from the count above
        if blob is None:
            return None  # no tick yet, or no such symbol: the full path knows which
        hot = orjson.loads(blob)
        if match["what"] == "price":
            data = messages.price(ticker, hot)
        else:
            data = messages.indicators(ticker, hot, anomaly_threshold=hot["anomaly_threshold"])
        body = FastJSONRenderer().render(data)
        response = HttpResponse(body, content_type="application/json")
        response["Vary"] = _VARY
        response["Allow"] = _ALLOW
        response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
        response["Content-Length"] = str(len(body))
        setattr(request, ROUTE_ATTR, _route(match["what"]))
        return response
