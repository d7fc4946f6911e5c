"""The Symbol admin a staff user works with."""

from __future__ import annotations

import pytest

from apps.market.models import Symbol

pytestmark = pytest.mark.django_db


def test_changelist_shows_symbols_and_filters(admin_client, market):
    response = admin_client.get("/admin/market/symbol/", {"sector": "Technology"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "AAPL" in body
    assert "MSFT" in body
    assert "TSLA" not in body


def test_search_finds_by_name(admin_client, market):
    response = admin_client.get("/admin/market/symbol/", {"q": "Alphabet"})
    assert "GOOGL" in response.content.decode()
    assert "AMZN" not in response.content.decode()


@pytest.mark.parametrize(("action", "active"), [("deactivate", False), ("activate", True)])
def test_actions_switch_symbols_on_and_off(admin_client, market, action, active):
    Symbol.objects.update(active=not active)
    response = admin_client.post(
        "/admin/market/symbol/",
        {"action": action, "_selected_action": ["AAPL", "TSLA"]},
        follow=True,
    )
    assert response.status_code == 200
    assert "2 symbol(s)" in response.content.decode()
    assert set(Symbol.objects.filter(active=active).values_list("ticker", flat=True)) == {
        "AAPL",
        "TSLA",
    }


def test_add_form_rejects_a_malformed_ticker(admin_client):
    response = admin_client.post(
        "/admin/market/symbol/add/",
        {"ticker": "bad ticker", "name": "X", "exchange": "NYSE", "start_price": 10,
         "drift": 0, "volatility": 0.2, "jump_rate": 1, "anomaly_threshold": 3},
    )  # fmt: skip
    assert response.status_code == 200
    assert "A ticker is 1-16 upper-case letters" in response.content.decode()
    assert not Symbol.objects.exists()


def test_anonymous_users_are_sent_to_the_login(client):
    response = client.get("/admin/market/symbol/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
