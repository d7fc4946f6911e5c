"""The API root (`GET /api/v1/`), which the router gives: every endpoint group, linked."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model

from apps.accounts import roles

pytestmark = pytest.mark.django_db

GROUPS = {
    "stocks": "/api/v1/stocks",
    "market/overview": "/api/v1/market/overview",
    "alerts/rules": "/api/v1/alerts/rules",
    "alerts/events": "/api/v1/alerts/events",
    "tokens": "/api/v1/tokens",
    "auth/token": "/api/v1/auth/token",
}


@pytest.fixture
def signed_in(client, market, redis_client):
    """A signed-in client: per-user groups (alerts, token) answer only such a caller."""
    alice = get_user_model().objects.create_user("alice")
    client.force_login(roles.user_role_set(user=alice, role=roles.ANALYST))
    return client


@pytest.mark.parametrize("root", ["/api/v1/", "/api/v1"])
def test_the_root_lists_every_endpoint_group_with_absolute_urls_that_answer(signed_in, root):
    response = signed_in.get(root)
    assert response.status_code == 200  # no redirect, with or without the slash
    assert response["Content-Type"].startswith("application/json")
    links = response.json()
    assert set(links) == set(GROUPS)
    for group, url in links.items():
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("http", "testserver"), url  # absolute
        assert parts.path.rstrip("/") == GROUPS[group]
        followed = signed_in.get(url)
        assert followed.status_code == 200, (group, followed.content[:300])
        assert followed["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("root", ["/api/v1/", "/api/v1"])
def test_the_browsable_api_renders_the_root_with_its_links(signed_in, root):
    response = signed_in.get(root, headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for path in GROUPS.values():
        assert f"http://testserver{path}" in html


def test_the_root_is_as_public_as_market_data(client, market, redis_client, settings):
    assert client.get("/api/v1/").status_code == 200
    settings.MARKETFLUX_PUBLIC_READ = False
    for root in ("/api/v1/", "/api/v1"):
        response = client.get(root)
        assert response.status_code == 401
        assert "detail" in response.json()


def test_the_browsable_api_prints_an_answer_over_several_lines(client, market, redis_client):
    html = client.get("/api/v1/stocks/AAPL/price", HTTP_ACCEPT="text/html").content.decode()
    assert "\n  &quot;symbol&quot;: &quot;AAPL&quot;,\n" in html  # one field a line, indented
    asked = client.get("/api/v1/stocks/AAPL/price", HTTP_ACCEPT="application/json; indent=4")
    assert asked.content.decode().splitlines()[1] == '  "symbol": "AAPL",'
    plain = client.get("/api/v1/stocks/AAPL/price")
    assert b"\n" not in plain.content  # programs still get it compact


def test_the_token_page_shows_code_not_markdown_backticks(signed_in):
    html = signed_in.get("/api/v1/auth/token", HTTP_ACCEPT="text/html").content.decode()
    assert "<code>Authorization: Token &lt;key&gt;</code>" in html
    description = html.split('<div class="pull-left">', 1)[1].split("</div>", 1)[0]
    assert "Your default API token" in description
    assert "`" not in description
