"""At most MARKETFLUX_WS_MAX_PER_IP WebSockets at once from one client address, per process
(docs/contracts.md#close-codes, docs/security.md#threat-model).

An ASGI middleware around the whole WebSocket stack (marketflux_site/asgi.py), so a client
over the limit costs one dictionary look-up: no origin check, session or token query, and
no consumer. Over the limit the handshake is accepted and closed at once with
`close_codes.TOO_MANY_CONNECTIONS` (4429): a refused handshake would only be an HTTP 403,
which browsers do not show to the page, while a close code tells the client what happened.

Per process, not across the tier: the ASGI processes share one listening socket (`make
run`, `apps/ops/launcher.py`) or sit behind the proxy (Docker Compose), and the kernel or
the proxy hands each connection to any of them, so one address may hold up to
processes x limit sockets in all. Counting in Redis would make that exact, but it adds two
round trips to every connect and disconnect, and a process that dies (SIGKILL, OOM) would
leave its counts behind until they expired; the limit is a guard against one address
holding thousands of sockets, not a quota, and the per-process count does that with no
shared state. Hand-written because Channels and Daphne have no per-address limit.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from apps.ops.metrics import client_address
from apps.streaming import close_codes

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def client_ip(scope: Scope, num_proxies: int) -> str | None:
    """The address a WebSocket's client connects from, as the HTTP side reads it
    (`apps.ops.metrics.client_address`): with `num_proxies` trusted proxies in front, the
    one the outermost of them recorded in X-Forwarded-For, else the peer's. A client cannot
    choose its address by sending the header itself: the proxies append to it, and only
    their entries are read. None when the server does not know the peer (a Unix socket)."""
    headers = scope.get("headers", ())
    forwarded = ",".join(v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for")
    peer = (scope.get("client") or (None,))[0] or ""
    address = client_address({"HTTP_X_FORWARDED_FOR": forwarded, "REMOTE_ADDR": peer}, num_proxies)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return peer or None  # a proxy that wrote something else: count the peer
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 and 127.0.0.1 are one client
    return str(ip)


class ConnectionLimitMiddleware:
    """Counts this process's open WebSockets by client address and refuses the one over
    MARKETFLUX_WS_MAX_PER_IP (0: no limit). Read per connection, so a test's settings apply.

    A connection counts from its handshake until the application it was handed to returns,
    which Daphne's disconnect (or its cancellation of a stuck application) always brings.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.open: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = settings.MARKETFLUX_WS_MAX_PER_IP
        if scope["type"] != "websocket" or not limit:
            return await self.app(scope, receive, send)
        address = client_ip(scope, settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0)
        if address is None:
            return await self.app(scope, receive, send)
        # No await between the check and the count: one event loop, so no other handshake
        # of this process can slip in between.
        if self.open[address] >= limit:
            logger.info(
                "WebSocket from %s refused: %d open from that address (the limit)",
                address,
                self.open[address],
            )
            await refuse(receive, send)
            return None
        self.open[address] += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.open[address] -= 1
            if self.open[address] <= 0:
                del self.open[address]


async def refuse(receive: Receive, send: Send) -> None:
    """Accept the handshake and close at once with TOO_MANY_CONNECTIONS: the client sees the
    code (a handshake refused outright is only an HTTP 403 to it)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": close_codes.TOO_MANY_CONNECTIONS})
