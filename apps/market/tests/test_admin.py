"""The Symbol admin a staff user works with."""

from __future__ import annotations

import re

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


def test_add_form_takes_a_lower_case_ticker_as_upper_case(admin_client):
    response = admin_client.post(
        "/admin/market/symbol/add/",
        {"ticker": "nvda", "name": "NVIDIA", "exchange": "NASDAQ", "start_price": 120,
         "drift": 0, "volatility": 0.4, "jump_rate": 1, "anomaly_threshold": 3,
         # the page's alert rules inline, empty
         "alert_rules-TOTAL_FORMS": 0, "alert_rules-INITIAL_FORMS": 0},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    assert Symbol.objects.get(ticker="NVDA").name == "NVIDIA"
    assert not Symbol.objects.filter(ticker="nvda").exists()


def test_times_read_as_the_site_writes_them(admin_client, market):
    from django.utils import timezone

    late = timezone.now().replace(hour=23, minute=57)
    Symbol.objects.filter(ticker="AAPL").update(updated_at=late)
    body = admin_client.get("/admin/market/symbol/", {"q": "AAPL"}).content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d 23:57:\d\d UTC", body), body
    assert "p.m." not in body
