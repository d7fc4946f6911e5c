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
from apps.ops.redis_client import execute_packed, redis_client

# On the HttpRequest: {throttle key: (count, ttl_ms)} the lean path (apps/api/lean.py)
# already counted in its own round trip, so the full path does not count the request twice.
COUNTED_ATTR = "marketflux_throttle_counted"


def window_commands(key: str, duration: int) -> list[list[bytes]]:
    """A fixed window's commands: start it if new, count the request, read its remaining
    time; the replies are (OK or None, count, ttl_ms)."""
    name = key.encode()
    return [
        # A new window (EXPIRE NX needs Redis 7).
        [b"SET", name, b"0", b"EX", str(int(duration)).encode(), b"NX"],
        [b"INCR", name],
        [b"PTTL", name],
    ]


class _WindowThrottle(SimpleRateThrottle):
    def client_key(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.client_key(request)
        if key is None:
            return True
        counted = getattr(request, COUNTED_ATTR, None)  # DRF passes it through
        if counted and key in counted:
            count, ttl_ms = counted[key]
        else:
            _, count, ttl_ms = execute_packed(redis_client(), window_commands(key, self.duration))
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
