"""Fired alerts reach their owner's /ws/market sockets, and only theirs (real Redis layer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from rest_framework.authtoken.models import Token

from apps.accounts import roles
from apps.alerts import conditions as c
from apps.alerts.models import AlertEvent, AlertRule
from apps.ingest.pipeline import TickBatch, ingest
from apps.testing.factories import AlertRuleFactory
from marketflux_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@sync_to_async
def user_with_rule(name: str, level: float) -> tuple[str, AlertRule]:
    rule = AlertRuleFactory(
        owner__username=name, condition=c.CROSSES_ABOVE, threshold=level,
        frequency=c.EVERY_TIME, message="{symbol} crossed {value}",
    )  # fmt: skip
    roles.user_role_set(user=rule.owner, role=roles.ANALYST)  # the role that keeps rules
    return Token.objects.create(user=rule.owner).key, rule


async def socket_for(token: str | None) -> WebsocketCommunicator:
    path = "/ws/market" + (f"?token={token}" if token else "")
    socket = WebsocketCommunicator(application, path)
    connected, _ = await socket.connect(timeout=WAIT)
    assert connected
    return socket


async def alerts_until(socket: WebsocketCommunicator, count: int, *, quiet: float = 0) -> list:
    """The `alert` messages a socket gets until it has `count`, then until it has been
    sent nothing for `quiet` seconds."""
    alerts: list[dict] = []

    async def read() -> None:
        frame = await socket.receive_json_from(timeout=WAIT)
        alerts.extend(m for m in frame if m["type"] == "alert")

    while len(alerts) < count:
        await read()
    while quiet and not await socket.receive_nothing(timeout=quiet):
        await read()
    return alerts


@pytest.fixture
async def two_users(market, redis_client):
    ada = await user_with_rule("ada", 100.0)
    bob = await user_with_rule("bob", 200.0)
    yield ada, bob
    await sync_to_async(connections.close_all)()


async def test_each_user_gets_their_own_alerts_and_no_one_elses(two_users):
    (ada_token, ada_rule), (bob_token, _) = two_users
    ada, ada_again, bob, anonymous = [
        await socket_for(t) for t in (ada_token, ada_token, bob_token, None)
    ]
    await sync_to_async(ingest)(
        TickBatch.from_rows([("AAPL", T0, 99.0, 1), ("AAPL", T0 + timedelta(seconds=1), 101.5, 1)])
    )
    event = await sync_to_async(AlertEvent.objects.get)(rule=ada_rule)
    expected = {
        "type": "alert",
        "id": event.pk,
        "rule": ada_rule.pk,
        "symbol": "AAPL",
        "ts": (T0 + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
        "condition": "crosses_above",
        "price": 101.5,
        "value": 101.5,
        "message": "AAPL crossed 101.5",
        "acknowledged": False,
    }
    assert await alerts_until(ada, 1, quiet=1.0) == [expected]
    assert await alerts_until(ada_again, 1) == [expected]  # every socket of the owner
    assert await alerts_until(bob, 0, quiet=1.5) == []
    assert await alerts_until(anonymous, 0, quiet=0.5) == []
    for socket in (ada, ada_again, bob, anonymous):
        await socket.disconnect()


async def test_a_replayed_batch_sends_no_alert_twice(two_users):
    (ada_token, _), _ = two_users
    ada = await socket_for(ada_token)
    batch = TickBatch.from_rows(
        [("AAPL", T0, 99.0, 1), ("AAPL", T0 + timedelta(seconds=1), 101.0, 1)]
    )
    await sync_to_async(ingest)(batch)
    await sync_to_async(ingest)(batch)
    assert len(await alerts_until(ada, 1, quiet=1.5)) == 1
    await ada.disconnect()
