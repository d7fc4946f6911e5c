from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.market.pipeline import TickBatch, ingest


def test_health_answers_ok_with_and_without_slash(client):
    for path in ("/health", "/health/"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_home_page_lists_symbols_with_their_last_price(client, market):
    ts = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    ingest(TickBatch.from_rows([("AAPL", ts, 231.25, 100)]))
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-symbol="AAPL" data-field="price">231.25<' in body
    for symbol in market:
        assert f'data-symbol="{symbol.ticker}"' in body
    assert "no tick yet" in body  # the other four have none
