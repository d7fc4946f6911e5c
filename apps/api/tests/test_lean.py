"""The lean path for anonymous hot-state reads (apps/api/lean.py): the same answers as the
full path, each request counted once against the throttle, and everything else left to
the full path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from apps.api.views import StockViewSet
from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest

API = "/api/v1"
LEAN = "apps.api.lean.LeanReadMiddleware"
T0 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
def ticked(market, redis_client):
    """AAPL and MSFT with a tick each (a hot state); TSLA has none yet."""
    store.forget()
    ingest(TickBatch.from_rows([("AAPL", T0, 190.5, 100), ("MSFT", T0, 410.25, 50)]))
    yield
    store.forget()


def full_path_client(settings) -> Client:
    """A client of a site without the lean middleware: every request takes the full path."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != LEAN]
    return Client()


@pytest.mark.parametrize(
    "path",
    [
        "stocks/AAPL/price",
        "stocks/aapl/price/",
        "stocks/MSFT/indicators",
        "stocks/msft/indicators/",
    ],
)
@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_a_lean_answer_is_the_full_paths_byte_for_byte(ticked, settings, path, accept):
    # One request id for both (a proxy's): the id is the only header that differs by design.
    headers = {"accept": accept, "x-request-id": "same"} if accept else {"x-request-id": "same"}
    lean = Client().get(f"{API}/{path}", headers=headers)
    full = full_path_client(settings).get(f"{API}/{path}", headers=headers)
    assert lean.status_code == full.status_code == 200
    assert lean.content == full.content
    assert dict(lean.items()) == dict(full.items())  # every header, Vary and Allow included


def test_the_lean_path_answers_without_drf(ticked, monkeypatch):
    def not_here(*args, **kwargs):
        raise AssertionError("the full path ran")

    monkeypatch.setattr(StockViewSet, "initial", not_here)
    body = Client().get(f"{API}/stocks/AAPL/price").json()
    assert body["symbol"] == "AAPL"
    assert body["price"] == 190.5


@pytest.mark.parametrize(
    ("what", "headers", "status"),
    [
        ("a browser, which gets the browsable API", {"accept": "text/html"}, 200),
        ("an indent asked for", {"accept": "application/json; indent=4"}, 200),
        ("a bad token", {"authorization": "Token nope"}, 401),
    ],
)
def test_other_requests_take_the_full_path(ticked, monkeypatch, what, headers, status):
    seen = []
    original = StockViewSet.initial
    monkeypatch.setattr(
        StockViewSet, "initial", lambda self, *a, **k: seen.append(1) or original(self, *a, **k)
    )
    response = Client().get(f"{API}/stocks/AAPL/price", headers=headers)
    assert response.status_code == status, what
    assert seen, what


def test_unknown_and_not_yet_ticked_symbols_get_the_documented_answers(ticked):
    client = Client()
    unknown = client.get(f"{API}/stocks/NOPE/price")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Unknown symbol: 'NOPE'."}
    assert client.get(f"{API}/stocks/TSLA/price").json()["price"] is None  # no tick yet
    assert client.get(f"{API}/stocks/TSLA/indicators").json()["anomaly"] is False


@pytest.fixture
def three_a_minute(settings, monkeypatch):
    rates = {"anon": "3/min", "user": "5/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)


@pytest.mark.parametrize("symbol", ["AAPL", "NOPE", "TSLA"])
def test_each_request_counts_once_against_the_anonymous_rate(ticked, three_a_minute, symbol):
    """Answered lean (AAPL), or counted lean and answered by the full path (an unknown
    symbol's 404, a symbol without ticks): three requests pass, the fourth is throttled."""
    client = Client()
    first = client.get(f"{API}/stocks/{symbol}/price").status_code
    for _ in range(2):
        assert client.get(f"{API}/stocks/{symbol}/price").status_code == first
    throttled = client.get(f"{API}/stocks/{symbol}/price")
    assert throttled.status_code == 429
    assert "throttled" in throttled.json()["detail"]
    assert 0 < int(throttled["Retry-After"]) <= 60
    # The budget spans every endpoint, lean or not.
    assert client.get(f"{API}/market/overview").status_code == 429


def test_with_public_read_off_anonymous_reads_are_refused(ticked, settings):
    settings.MARKETFLUX_PUBLIC_READ = False
    response = Client().get(f"{API}/stocks/AAPL/price")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
