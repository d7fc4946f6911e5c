"""The operators' status page (`/ops/`) and its JSON, in process: who may see them, and that
real tick runs (`market_tick`, the tick task's own function) show up in what they say."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.test import Client

from apps.accounts import roles
from apps.ingest.services import market_tick
from apps.market import keys
from apps.testing.factories import UserFactory

pytestmark = pytest.mark.django_db

SYMBOLS = 5  # the default market


@pytest.fixture
def staff(db):
    # The operator role: staff, and the status page (docs/security.md#roles).
    return roles.user_role_set(user=UserFactory(username="operator"), role=roles.OPERATOR)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_and_non_staff_are_refused(alice):
    anonymous = Client()
    page = anonymous.get("/ops/")
    assert page.status_code == 302
    assert page["Location"].startswith("/admin/login/?next=/ops/")
    assert anonymous.get("/ops/status.json").status_code == 403

    reader = signed_in(alice)  # signed in, not staff: as the admin treats her
    page = reader.get("/ops/")
    assert page.status_code == 302
    assert page["Location"].startswith("/admin/login/")
    answer = reader.get("/ops/status.json")
    assert answer.status_code == 403
    assert "ticks_per_s" not in answer.content.decode()


def test_real_tick_runs_show_as_rate_stages_and_lag(staff, market, redis_client):
    redis_client.delete(keys.BATCH_STATS)
    now = time.time()
    newest = now - now % 0.5
    slots = [newest - 0.5 * n for n in range(4, 0, -1)]  # four runs in the last 2 s
    for slot in slots:
        run = market_tick(shard=0, shards=1, scheduled_at=datetime.fromtimestamp(slot, UTC))
        assert run.status == "ok"

    client = signed_in(staff)
    status = client.get("/ops/status.json").json()
    ingest = status["ingest"]
    # 4 batches of 5 ticks within the last 10 s: 20 ticks over 10 s.
    assert ingest["ticks_per_s"] == pytest.approx(4 * SYMBOLS / 10)
    assert ingest["batches"] == 4
    assert sum(ingest["series"]["ticks_per_s"]) == 4 * SYMBOLS
    assert 0 < ingest["lag_ms"]["p50"] <= ingest["lag_ms"]["p99"]
    for stage in ("store", "indicators", "snapshots", "alerts", "commit", "hot_state", "publish"):
        assert ingest["stages_ms"][stage]["p99"] is not None, stage
    assert ingest["newest_batch_age_s"] >= 0
    assert status["shards"]["shard-0"]["status"] == "ok"
    assert set(status["sockets"]["by_route"]) == {"/ws/market", "/ws/stocks/{symbol}", "/stocks"}

    page = client.get("/ops/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<tr data-stage="store">' in html
    assert 'data-field="ticks_per_s">2.0<' in html
    assert "js/ops.js" in html
    assert "css/ops.css" in html


def test_an_empty_market_says_so_rather_than_failing(staff, redis_client):
    redis_client.delete(keys.BATCH_STATS)
    status = signed_in(staff).get("/ops/status.json").json()
    assert status["ingest"]["ticks_per_s"] == 0
    assert status["ingest"]["lag_ms"] == {"p50": None, "p99": None}
    assert status["sources"] == []
    page = signed_in(staff).get("/ops/")
    assert "No live source reports" in page.content.decode()
