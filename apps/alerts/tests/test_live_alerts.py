"""An alert rule made through the REST API fires in the real pipeline (Celery worker and
beat) and reaches the owner's WebSocket client on a real Daphne within two tick intervals."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from apps.accounts import roles
from apps.testing.factories import UserFactory
from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TICK_INTERVAL = 0.5


def test_a_rule_made_over_rest_alerts_its_owner_live(market, redis_client, processes):
    owner, other = UserFactory(username="ada"), UserFactory(username="bob")
    for user in (owner, other):  # the role that keeps alert rules (docs/security.md#roles)
        roles.user_role_set(user=user, role=roles.ANALYST)
    headers = {"Authorization": f"Token {Token.objects.create(user=owner).key}"}
    other_token = Token.objects.create(user=other).key
    processes.celery_worker(TICK_INTERVAL=str(TICK_INTERVAL))
    processes.celery_beat(TICK_INTERVAL=str(TICK_INTERVAL))
    url = processes.daphne()
    api = f"{url}/api/v1"
    wait_for(
        lambda: requests.get(f"{api}/stocks/AAPL/price", timeout=5).json()["price"],
        timeout=60,
        what="live AAPL prices",
    )
    ws_url = url.replace("http://", "ws://") + "/ws/market"
    with (
        connect(f"{ws_url}?token={headers['Authorization'][6:]}") as mine,
        connect(f"{ws_url}?token={other_token}") as theirs,
    ):
        created = requests.post(
            f"{api}/alerts/rules/",
            json={"symbol": "aapl", "condition": "price_above", "threshold": 0.01,
                  "frequency": "every_time", "message": "{symbol} at {price}"},
            headers=headers,
            timeout=10,
        )  # fmt: skip
        made_at = datetime.now(UTC)
        assert created.status_code == 201, created.text
        rule = created.json()

        alerts = []
        deadline = time.monotonic() + 20
        while len(alerts) < 3 and time.monotonic() < deadline:
            for message in json.loads(mine.recv(timeout=10)):
                if message["type"] == "alert":
                    alerts.append((message, datetime.now(UTC)))
        assert len(alerts) >= 3, "three alerts (one a tick) within 20 s"

        first, arrived = alerts[0]
        tick = datetime.fromisoformat(first["ts"])
        assert first["rule"] == rule["id"]
        assert first["symbol"] == "AAPL"
        assert first["message"] == f"AAPL at {first['price']:,.2f}"  # the tick size
        # The first tick after the rule existed fired it, and it arrived at once.
        assert (tick - made_at).total_seconds() <= 2 * TICK_INTERVAL
        assert (arrived - tick).total_seconds() <= 2 * TICK_INTERVAL
        ticks = [datetime.fromisoformat(m["ts"]) for m, _ in alerts]
        assert len(set(ticks)) == len(ticks)  # one alert a tick, none twice

        listed = requests.get(f"{api}/alerts/events/", headers=headers, timeout=10).json()
        assert first["id"] in [e["id"] for e in listed["results"]]

        # The other user's socket had the market's frames, never this alert.
        other_types = set()
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            try:
                other_types |= {m["type"] for m in json.loads(theirs.recv(timeout=0.5))}
            except TimeoutError:
                break
        assert "alert" not in other_types
