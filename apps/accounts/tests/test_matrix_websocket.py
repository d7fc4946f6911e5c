"""Both WebSocket feeds and the gateway's `/stocks` by every kind of caller, with
MARKETFLUX_PUBLIC_READ on and off (docs/security.md#roles, docs/contracts.md#close-codes).

Through Channels' WebsocketCommunicator on the real ASGI application, as a browser (the
session cookie) and as a program (an API token) connect. Expected answers come from the
role table (`conftest.allowed`): a first message for whoever may read the market, 4401
for an anonymous client refused, 4403 for a signed-in one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from rest_framework.authtoken.models import Token

from apps.accounts import roles
from apps.accounts.tests.conftest import (
    ANONYMOUS,
    PUBLIC,
    PUBLIC_IDS,
    WHO,
    allowed,
    make_user,
)
from apps.alerts.models import AlertRule
from apps.ingest.pipeline import TickBatch, ingest
from apps.streaming import close_codes
from marketflux_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0


@pytest.fixture
async def feed(market_data):
    yield
    # The ORM ran in asgiref's worker thread: close its connection, as Daphne would.
    await sync_to_async(connections.close_all)()


@sync_to_async
def credentials(who: str) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """(headers with the session cookie of a browser signed in as `who`, an API key of
    theirs); nothing for anonymous."""
    user = make_user(who)
    if user is None:
        return [], None
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    cookie = f"{name}={client.cookies[name].value}".encode()
    return [(b"cookie", cookie)], Token.objects.create(user=user).key


async def first_output(socket: WebsocketCommunicator) -> dict:
    connected, _ = await socket.connect(timeout=WAIT)
    assert connected
    return await socket.receive_output(timeout=WAIT)


def closed_with(output: dict) -> int | None:
    return output.get("code", 1000) if output["type"] == "websocket.close" else None


def expected_refusal(who: str) -> int:
    return close_codes.UNAUTHORIZED if who == ANONYMOUS else close_codes.FORBIDDEN


@pytest.mark.parametrize("public", PUBLIC, ids=PUBLIC_IDS)
@pytest.mark.parametrize("who", WHO)
async def test_the_feeds_open_as_the_role_table_says(who, public, settings, feed):
    settings.MARKETFLUX_PUBLIC_READ = public
    headers, key = await credentials(who)
    may_read = allowed(who, roles.READ_MARKET, public)
    answers = {}
    for path in ("/ws/market", "/ws/stocks/AAPL"):
        for how, (url, with_headers) in {
            "session": (path, headers),
            "token": (f"{path}?token={key}", []),
        }.items():
            if how == "token" and key is None:
                continue
            socket = WebsocketCommunicator(application, url, headers=with_headers)
            output = await first_output(socket)
            answers[path, how] = closed_with(output) or json.loads(output["text"])
            await socket.disconnect()
    for (path, how), answer in answers.items():
        if may_read:
            first = answer[0] if isinstance(answer, list) else answer
            assert first.get("type") in ("overview", "snapshot"), (path, how, answer)
        else:
            assert answer == expected_refusal(who), (path, how, answer)


@pytest.mark.parametrize("public", PUBLIC, ids=PUBLIC_IDS)
@pytest.mark.parametrize("who", WHO)
async def test_the_gateway_stream_authenticates_as_the_role_table_says(who, public, settings, feed):
    settings.MARKETFLUX_PUBLIC_READ = public
    _, key = await credentials(who)
    socket = WebsocketCommunicator(application, "/stocks")
    connected = await first_output(socket)
    assert json.loads(connected["text"])[0]["status"] == "connected"
    await socket.send_to(text_data=json.dumps({"action": "auth", "params": key or "no-such-key"}))
    answer = json.loads((await socket.receive_output(timeout=WAIT))["text"])[0]
    if allowed(who, roles.READ_MARKET, public):
        assert answer["status"] == "auth_success", answer
        await socket.disconnect()
    else:
        assert answer["status"] == "auth_failed", answer
        assert closed_with(await socket.receive_output(timeout=WAIT)) == expected_refusal(who)


@pytest.mark.parametrize("who", [roles.VIEWER, roles.ANALYST])
async def test_alerts_reach_the_market_feed_only_of_a_role_that_keeps_alert_rules(
    who, settings, feed
):
    """A viewer with a rule left from an earlier role hears nothing of it; an analyst does."""
    headers, _ = await credentials(who)

    @sync_to_async
    def rule_and_tick() -> None:
        owner = get_user_model().objects.get(username=who)
        AlertRule.objects.create(owner=owner, symbol_id="MSFT", condition="price_above",
                                 threshold=1.0, frequency="every_time")  # fmt: skip
        ingest(TickBatch.from_rows([("MSFT", datetime.now(UTC) + timedelta(seconds=1), 500.0, 1)]))

    socket = WebsocketCommunicator(application, "/ws/market", headers=headers)
    first = await first_output(socket)
    assert json.loads(first["text"])[0]["type"] == "overview"
    await rule_and_tick()
    if who == roles.ANALYST:
        heard: list[dict] = []
        while not heard:
            heard = [
                m for m in await socket.receive_json_from(timeout=WAIT) if m["type"] == "alert"
            ]
        assert [m["symbol"] for m in heard] == ["MSFT"]
    else:
        # Not subscribed to any ticks: an alert is the only thing the socket could be sent,
        # and the analyst's case above shows it arrives well within this.
        assert await socket.receive_nothing(timeout=3)
    await socket.disconnect()
