"""Users, rules and prices the alerts tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from apps.alerts.models import AlertRule
from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest


@pytest.fixture
def fresh_state(redis_client):
    """Empty Redis (hot state, rules version) and a pipeline that has seen nothing."""
    store.forget()
    yield
    store.forget()


@pytest.fixture
def alice(market):
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def bob(market):
    return get_user_model().objects.create_user("bob")


def make_rule(owner, symbol: str | None = "AAPL", **fields) -> AlertRule:
    fields = {"condition": "price_above", "threshold": 200.0, **fields}
    return AlertRule.objects.create(owner=owner, symbol_id=symbol, **fields)


def feed_prices(prices: dict[str, float]) -> datetime:
    """One tick per symbol through the real pipeline, so the hot state holds these prices."""
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    ingest(TickBatch.from_rows([(t, ts, p, 100) for t, p in prices.items()]))
    return ts
