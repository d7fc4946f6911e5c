"""Who may read the API, API tokens (own endpoint and management command), throttling."""

from __future__ import annotations

from io import StringIO

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.models import ApiToken

API = "/api/v1"
MARKET_PATHS = [
    "stocks",
    "stocks/AAPL/price",
    "stocks/AAPL/history",
    "stocks/AAPL/indicators",
    "stocks/AAPL/indicators/history",
    "stocks/AAPL/bars",
    "market/overview",
]
TOKEN = f"{API}/auth/token"


@pytest.fixture
def login_only(settings, redis_client):
    settings.MARKETFLUX_PUBLIC_READ = False


def with_token(key: str) -> dict:
    return {"authorization": f"Token {key}"}


def status_of(client, path: str, **headers) -> int:
    return client.get(path, headers=headers).status_code


# Reading market data.


@pytest.mark.parametrize("path", MARKET_PATHS)
def test_market_data_is_public_by_default(client, market, redis_client, path):
    assert client.get(f"{API}/{path}").status_code == 200


@pytest.mark.parametrize("path", MARKET_PATHS)
def test_without_public_read_anonymous_callers_get_401(client, market, login_only, path):
    response = client.get(f"{API}/{path}")
    assert response.status_code == 401
    assert "detail" in response.json()
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize("path", MARKET_PATHS)
def test_without_public_read_a_signed_in_user_reads(client, market, login_only, alice, path):
    client.force_login(alice)
    assert client.get(f"{API}/{path}").status_code == 200


@pytest.mark.parametrize("path", MARKET_PATHS)
def test_without_public_read_a_token_reads(client, market, login_only, alice, path):
    client.force_login(alice)
    key = client.post(TOKEN).json()["token"]
    client.logout()
    assert client.get(f"{API}/{path}", headers=with_token(key)).status_code == 200
    assert client.get(f"{API}/{path}", headers=with_token(key[:-1] + "x")).status_code == 401


# The caller's own token.


def test_the_token_endpoint_needs_a_login(client, redis_client, db):
    for method in (client.get, client.post, client.delete):
        response = method(TOKEN)
        assert response.status_code == 401
        assert "detail" in response.json()


def test_a_user_creates_rotates_and_revokes_their_token(client, market, login_only, alice):
    client.force_login(alice)
    assert client.get(TOKEN).json()["token"] is None

    created = client.post(TOKEN)
    assert created.status_code == 201
    first = created.json()["token"]
    assert first
    assert created.json()["created"].endswith("Z")
    assert created["Cache-Control"] == "no-store"
    # The key is shown once: the database holds its digest only, GET tells when it was made.
    shown = {"token": None, "created": created.json()["created"]}
    assert client.get(f"{TOKEN}/").json() == shown  # the trailing slash works too
    assert not Token.objects.exists()
    assert first not in ApiToken.objects.get(user=alice).digest

    client.logout()
    assert status_of(client, f"{API}/stocks", **with_token(first)) == 200
    assert client.get(TOKEN, headers=with_token(first)).json() == shown

    # Rotating (here with the token itself, as a program would) replaces the key.
    rotated = client.post(TOKEN, headers=with_token(first))
    assert rotated.status_code == 201
    second = rotated.json()["token"]
    assert second != first
    assert status_of(client, f"{API}/stocks", **with_token(first)) == 401
    assert status_of(client, TOKEN, **with_token(first)) == 401
    assert status_of(client, f"{API}/stocks", **with_token(second)) == 200

    revoked = client.delete(TOKEN, headers=with_token(second))
    assert revoked.status_code == 204
    assert status_of(client, f"{API}/stocks", **with_token(second)) == 401
    assert status_of(client, TOKEN, **with_token(second)) == 401
    client.force_login(alice)
    assert client.get(TOKEN).json() == {"token": None, "created": None}
    assert client.delete(TOKEN).status_code == 204  # nothing left to revoke: still fine


def test_a_user_only_ever_sees_their_own_token(client, redis_client, alice, bob):
    client.force_login(alice)
    alices = client.post(TOKEN).json()["token"]
    client.force_login(bob)
    assert client.get(TOKEN).json()["token"] is None
    bobs = client.post(TOKEN).json()["token"]
    assert bobs != alices
    client.delete(TOKEN)  # revokes Bob's, never Alice's
    client.logout()
    assert client.get(TOKEN, headers=with_token(alices)).json()["created"] is not None
    assert status_of(client, TOKEN, **with_token(bobs)) == 401


def test_the_browsable_api_offers_creating_and_revoking_the_token(client, redis_client, alice):
    client.force_login(alice)
    page = client.get(TOKEN, headers={"accept": "text/html"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'method="POST"' in html
    assert 'data-method="DELETE"' in html


# The apitoken management command.


def apitoken(*args: str) -> str:
    out = StringIO()
    call_command("apitoken", *args, stdout=out)
    return out.getvalue().strip()


def test_the_apitoken_command_prints_a_key_that_authenticates(client, market, login_only, alice):
    # The command in full (list, revoke, scopes, expiry) is tested in apps/accounts/tests.
    key = apitoken("create", "alice", "--name", "cli", "--scope", "read")
    assert status_of(client, f"{API}/stocks", **with_token(key)) == 200
    apitoken("revoke", "alice", "cli")
    assert status_of(client, f"{API}/stocks", **with_token(key)) == 401


def test_the_apitoken_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="nobody"):
        apitoken("create", "nobody", "--name", "cli", "--scope", "read")


# Throttling.


@pytest.fixture
def low_rates(settings, monkeypatch, redis_client):
    """Anonymous callers 3 requests a minute, users 5.

    DRF reads its rates into `SimpleRateThrottle.THROTTLE_RATES` once, when it is imported,
    so changing settings.REST_FRAMEWORK alone changes nothing in a running process: the
    class attribute is what a request reads (a new process reads MARKETFLUX_THROTTLE_*, see
    the test against a live Daphne below). The counters live in Redis, which `redis_client`
    empties before and after.
    """
    rates = {"anon": "3/min", "user": "5/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert "detail" in response.json()
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 60


def test_an_anonymous_caller_over_the_rate_gets_429_with_retry_after(client, market, low_rates):
    for _ in range(3):
        assert client.get(f"{API}/stocks/AAPL/price").status_code == 200
    assert_throttled(client.get(f"{API}/market/overview"))  # the limit spans every endpoint


def test_a_user_over_the_user_rate_gets_429(client, market, low_rates, alice):
    client.force_login(alice)
    for _ in range(5):  # more than the anonymous rate: users have their own
        assert client.get(f"{API}/stocks").status_code == 200
    assert_throttled(client.get(f"{API}/stocks"))
    client.logout()
    assert client.get(f"{API}/stocks").status_code == 200  # anonymous counts on its own


def test_each_anonymous_address_has_its_own_budget(client, market, low_rates):
    for _ in range(3):
        assert client.get(f"{API}/stocks", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert_throttled(client.get(f"{API}/stocks", REMOTE_ADDR="127.0.0.1"))
    for _ in range(3):  # another address is not held back by the first one's requests
        assert client.get(f"{API}/stocks", REMOTE_ADDR="127.0.0.2").status_code == 200
    assert_throttled(client.get(f"{API}/stocks", REMOTE_ADDR="127.0.0.2"))


def test_behind_a_proxy_each_forwarded_address_has_its_own_budget(
    client, market, low_rates, settings
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for address in ("203.0.113.7", "203.0.113.8"):
        forwarded = {**proxy, "HTTP_X_FORWARDED_FOR": address}
        for _ in range(3):
            assert client.get(f"{API}/stocks", **forwarded).status_code == 200
        assert_throttled(client.get(f"{API}/stocks", **forwarded))


def test_two_users_from_one_address_each_have_their_own_budget(
    client, market, low_rates, alice, bob
):
    for user in (alice, bob):
        client.force_login(user)
        for _ in range(5):
            assert client.get(f"{API}/stocks", REMOTE_ADDR="127.0.0.1").status_code == 200
        assert_throttled(client.get(f"{API}/stocks", REMOTE_ADDR="127.0.0.1"))
        client.logout()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_live_server_takes_its_rates_from_the_environment(market, redis_client, processes):
    get_user_model().objects.create_user("dave")
    key = apitoken("create", "dave", "--name", "live", "--scope", "read")
    url = processes.daphne(MARKETFLUX_THROTTLE_ANON="3/min", MARKETFLUX_THROTTLE_USER="5/min")
    # Daphne's own readiness probe (/health) is not a DRF view, so nothing is counted yet.
    for _ in range(3):
        assert requests.get(f"{url}{API}/stocks/AAPL/price", timeout=10).status_code == 200
    throttled = requests.get(f"{url}{API}/stocks/AAPL/price", timeout=10)
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 60

    headers = with_token(key)
    for _ in range(5):
        assert requests.get(f"{url}{API}/stocks", headers=headers, timeout=10).status_code == 200
    assert requests.get(f"{url}{API}/stocks", headers=headers, timeout=10).status_code == 429
