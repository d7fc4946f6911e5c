"""At most MARKETFLUX_WS_MAX_PER_IP WebSockets at once from one client address (per ASGI
process; docs/contracts.md#close-codes): the next is closed with 4429 at once, closing one
lets a new one in, and behind a trusted proxy the address is the one the proxy recorded.

A real Daphne on a loopback port, PostgreSQL and Redis; clients are the `websockets`
library, as a program would connect.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apps.streaming import close_codes
from apps.streaming.limits import client_ip
from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LIMIT = 3
WAIT = 15.0


@pytest.fixture
def site(market, redis_client, processes) -> str:
    """Daphne with a limit of 3 and no proxy in front (NUM_PROXIES=0)."""
    return processes.daphne("limited", MARKETFLUX_WS_MAX_PER_IP=str(LIMIT), NUM_PROXIES="0")


@pytest.fixture
def behind_proxy(market, redis_client, processes) -> str:
    """The same, as the ASGI tier behind one proxy (NUM_PROXIES=1)."""
    return processes.daphne("proxied", MARKETFLUX_WS_MAX_PER_IP=str(LIMIT), NUM_PROXIES="1")


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


def dial(base: str, path: str = "/ws/market", **headers: str) -> ClientConnection:
    return connect(ws_url(base, path), proxy=None, open_timeout=WAIT, additional_headers=headers)


def refusal(ws: ClientConnection) -> int | None:
    """The code the server closed `ws` with before sending it anything; None once it has
    sent a frame (then the socket is served)."""
    try:
        json.loads(ws.recv(timeout=WAIT))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else -1
    return None


def open_served(
    stack: contextlib.ExitStack, base: str, path: str = "/ws/market", **headers: str
) -> ClientConnection:
    """A socket the server accepted and serves (its first frame has arrived), open until
    `stack` closes."""
    ws = stack.enter_context(dial(base, path, **headers))
    assert refusal(ws) is None
    return ws


def close_code(base: str, path: str = "/ws/market", **headers: str) -> int | None:
    """The code the server closes a new socket with (None: it was served)."""
    with dial(base, path, **headers) as ws:
        return refusal(ws)


def open_once_free(stack: contextlib.ExitStack, base: str) -> ClientConnection:
    """A served socket, as soon as the server has counted a closed one out (it does when the
    closed socket's consumer has ended, a moment after the client saw the close)."""
    refused: list[int | None] = []

    def attempt() -> ClientConnection | None:
        with contextlib.ExitStack() as this_try:
            ws = this_try.enter_context(dial(base))
            code = refusal(ws)
            if code is None:
                stack.enter_context(this_try.pop_all())  # kept open with the others
                return ws
            refused.append(code)
            return None

    ws = wait_for(attempt, timeout=WAIT, what="a place freed by a closed socket")
    assert set(refused) <= {close_codes.TOO_MANY_CONNECTIONS}, refused
    return ws


def test_the_socket_over_the_limit_is_closed_with_4429_and_a_freed_place_is_taken(site):
    with contextlib.ExitStack() as stack:
        # The limit counts every feed together: two market sockets and a symbol's.
        opened = [open_served(stack, site, path) for path in ("/ws/market", "/ws/market")]
        opened.append(open_served(stack, site, "/ws/stocks/AAPL"))
        assert close_code(site) == close_codes.TOO_MANY_CONNECTIONS == 4429
        assert close_code(site, "/ws/stocks/MSFT") == 4429
        for ws in opened:  # the open ones are untouched
            assert ws.ping().wait(WAIT)

        # Closing one frees its place: the next socket is served, and is the last one.
        opened.pop().close()
        open_once_free(stack, site)
        assert close_code(site) == 4429


def test_a_forwarded_address_is_not_believed_without_a_trusted_proxy(site):
    # Loopback is not exempt, and a client naming another address for itself stays itself.
    with contextlib.ExitStack() as stack:
        for _ in range(LIMIT):
            open_served(stack, site, **{"X-Forwarded-For": "192.0.2.1"})
        assert close_code(site, **{"X-Forwarded-For": "192.0.2.2"}) == 4429


def test_behind_a_trusted_proxy_each_client_address_has_its_own_limit(behind_proxy):
    # The proxy appends the address it saw: the last entry. Whatever a client put before it
    # is its own say and changes nothing.
    with contextlib.ExitStack() as stack:
        for _ in range(LIMIT):
            open_served(stack, behind_proxy, **{"X-Forwarded-For": "198.51.100.9, 192.0.2.1"})
        assert close_code(behind_proxy, **{"X-Forwarded-For": "198.51.100.10, 192.0.2.1"}) == 4429
        # Another client behind the same proxy (the same peer address) is served.
        open_served(stack, behind_proxy, **{"X-Forwarded-For": "192.0.2.2"})


@pytest.mark.parametrize(
    ("scope", "proxies", "address"),
    [
        ({"client": ("127.0.0.1", 5000)}, 0, "127.0.0.1"),
        ({"client": ("127.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"192.0.2.1")]}, 0,
         "127.0.0.1"),
        ({"client": ("10.0.0.2", 5000),
          "headers": [(b"x-forwarded-for", b"198.51.100.9, 192.0.2.1")]}, 1, "192.0.2.1"),
        # Two headers read as one list, as HTTP says they are.
        ({"client": ("10.0.0.2", 5000),
          "headers": [(b"x-forwarded-for", b"198.51.100.9"), (b"x-forwarded-for", b"192.0.2.1")]},
         1, "192.0.2.1"),
        ({"client": ("10.0.0.2", 5000), "headers": [(b"x-forwarded-for", b"not an address")]}, 1,
         "10.0.0.2"),
        ({"client": ("::ffff:192.0.2.7", 5000)}, 0, "192.0.2.7"),
        ({"client": None}, 0, None),
    ],
)  # fmt: skip
def test_the_client_address_the_limit_counts(scope, proxies, address):
    assert client_ip({"type": "websocket", **scope}, proxies) == address
