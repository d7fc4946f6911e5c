"""Request rate limits (MARKETFLUX_THROTTLE_ANON / _USER), one Redis round trip each.

DRF's own throttles keep a list of request times per client in the cache: a read and a
write per request and throttle, half the time of a `/price` answer. A counter per client
and window (SET NX EX, INCR, PTTL in one pipeline) does the same job in one round trip; the
window is fixed rather than sliding, so a client may burst up to twice the rate across a
window edge.
"""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from apps.market import keys
from apps.ops.redis_client import redis_client


class _WindowThrottle(SimpleRateThrottle):
    def client_key(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.client_key(request)
        if key is None:
            return True
        pipe = redis_client().pipeline(transaction=False)
        pipe.set(key, 0, ex=self.duration, nx=True)  # a new window (EXPIRE NX needs Redis 7)
        pipe.incr(key)
        pipe.pttl(key)
        _, count, ttl_ms = pipe.execute()
        self._wait = max(ttl_ms, 0) / 1000.0
        return count <= self.num_requests

    def wait(self) -> float:
        return self._wait


class AnonThrottle(_WindowThrottle):
    """Anonymous clients, by address (NUM_PROXIES says which forwarded one to trust)."""

    scope = "anon"

    def client_key(self, request) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return keys.throttle(self.scope, self.get_ident(request))


class UserThrottle(_WindowThrottle):
    """Signed-in users, by user, wherever they connect from."""

    scope = "user"

    def client_key(self, request) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return keys.throttle(self.scope, str(request.user.pk))
