"""API tokens on the WebSockets (docs/contracts.md#websocket, docs/security.md#api-tokens):
`?token=` on both feeds and the gateway's `/stocks` auth message, through Channels'
WebsocketCommunicator on the real application, Redis and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.db import connections
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.accounts.tests.helpers import issue, make_dead
from apps.testing.factories import UserFactory
from marketflux_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0
FEEDS = ["/ws/market", "/ws/stocks/AAPL"]


@pytest.fixture
async def sockets(market, redis_client):
    """Opens sockets on the real application; closes them and the ORM's connections after."""
    opened: list[WebsocketCommunicator] = []

    async def open_socket(path: str) -> WebsocketCommunicator:
        socket = WebsocketCommunicator(application, path)
        connected, _ = await socket.connect(timeout=WAIT)
        assert connected, path
        opened.append(socket)
        return socket

    yield open_socket
    for socket in opened:
        await socket.disconnect()
    await sync_to_async(connections.close_all)()


async def first_output(socket: WebsocketCommunicator) -> dict:
    return await socket.receive_output(timeout=WAIT)


async def closed_with(socket: WebsocketCommunicator) -> int | None:
    """The close code if the server's first word is a close, else None (it sent data)."""
    output = await first_output(socket)
    return output.get("code", 1000) if output["type"] == "websocket.close" else None


@sync_to_async
def new_key(*scopes: str, **kwargs) -> str:
    return issue(UserFactory(), *scopes, **kwargs)


# /ws/market and /ws/stocks/{symbol}


@pytest.mark.parametrize("public_read", [True, False], ids=["public", "private"])
@pytest.mark.parametrize("state", ["expired", "revoked"])
@pytest.mark.parametrize("path", FEEDS)
async def test_an_expired_or_revoked_token_is_closed_with_4401(
    sockets, settings, path, state, public_read
):
    settings.MARKETFLUX_PUBLIC_READ = public_read
    key = await new_key("read", expires=timezone.now() + timedelta(days=1))
    assert await closed_with(await sockets(f"{path}?token={key}")) is None  # it opens
    await sync_to_async(make_dead)(key, state)
    assert await closed_with(await sockets(f"{path}?token={key}")) == 4401


@pytest.mark.parametrize("path", FEEDS)
async def test_a_read_or_admin_token_opens_the_feeds_without_public_read(sockets, settings, path):
    settings.MARKETFLUX_PUBLIC_READ = False
    assert await closed_with(await sockets(path)) == 4401  # anonymous: closed
    for scopes in (["read"], ["admin"], ["read", "alerts:write"]):
        key = await new_key(*scopes)
        socket = await sockets(f"{path}?token={key}")
        first = await first_output(socket)
        assert first["type"] == "websocket.send", (scopes, first)
        assert json.loads(first["text"])  # the overview or the snapshot


@pytest.mark.parametrize("path", FEEDS)
async def test_a_token_without_the_read_scope_is_closed_with_4401(sockets, path):
    key = await new_key("alerts:write")
    assert await closed_with(await sockets(f"{path}?token={key}")) == 4401


@pytest.mark.parametrize("path", FEEDS)
async def test_a_legacy_key_opens_the_feeds_before_and_after_migration(sockets, settings, path):
    settings.MARKETFLUX_PUBLIC_READ = False
    key = (await sync_to_async(Token.objects.create)(user=await sync_to_async(UserFactory)())).key
    assert await closed_with(await sockets(f"{path}?token={key}")) is None
    await sync_to_async(call_command)("migrate_tokens", stdout=StringIO())
    assert not await sync_to_async(Token.objects.exists)()
    assert await closed_with(await sockets(f"{path}?token={key}")) is None


# The gateway's /stocks


async def statuses(socket: WebsocketCommunicator) -> list[tuple[str, str]]:
    frame = json.loads(await socket.receive_from(timeout=WAIT))
    return [(e["status"], e["message"]) for e in frame if e["ev"] == "status"]


async def authenticate(sockets, key: str) -> tuple[WebsocketCommunicator, list]:
    socket = await sockets("/stocks")
    assert [s for s, _ in await statuses(socket)] == ["connected"]
    await socket.send_json_to({"action": "auth", "params": key})
    return socket, await statuses(socket)


@pytest.mark.parametrize("public_read", [True, False], ids=["public", "private"])
@pytest.mark.parametrize("state", ["expired", "revoked"])
async def test_the_gateway_refuses_an_expired_or_revoked_token_with_4401(
    sockets, settings, state, public_read
):
    settings.MARKETFLUX_PUBLIC_READ = public_read
    key = await new_key("read", expires=timezone.now() + timedelta(days=1))
    _, answer = await authenticate(sockets, key)
    assert answer == [("auth_success", "authenticated")]
    await sync_to_async(make_dead)(key, state)
    socket, answer = await authenticate(sockets, key)
    assert answer == [("auth_failed", "authentication failed")]
    assert await closed_with(socket) == 4401


async def test_the_gateway_takes_a_read_token_and_refuses_one_without_read(sockets, settings):
    settings.MARKETFLUX_PUBLIC_READ = False
    _, answer = await authenticate(sockets, await new_key("read"))
    assert answer == [("auth_success", "authenticated")]
    socket, answer = await authenticate(sockets, await new_key("alerts:write"))
    assert answer == [("auth_failed", "authentication failed")]
    assert await closed_with(socket) == 4401
