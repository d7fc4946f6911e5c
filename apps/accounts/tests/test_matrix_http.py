"""Every HTTP door by every kind of caller (docs/security.md#roles): each REST operation of
the OpenAPI schema (the API and the gateway), every page of the URL resolver, and the
admin's pages of every registered model, with MARKETFLUX_PUBLIC_READ on and off.

The expected answers come from `apps/accounts/roles.py`'s table (`conftest.allowed`); the
tables below say only which action each endpoint needs and what it answers when allowed.
An operation or page that is not in them fails `test_every_..._has_a_rule`, so a new
endpoint cannot ship without one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.accounts import roles
from apps.accounts.models import ApiToken
from apps.accounts.tests.conftest import (
    ANONYMOUS,
    LAST_AAPL_PRICE,
    NOW,
    PUBLIC,
    PUBLIC_IDS,
    SUPERUSER,
    WHO,
    actions_of,
    allowed,
    make_user,
)
from apps.accounts.tokens import api_token_create
from apps.alerts.models import AlertEvent, AlertRule
from apps.market.display import price_text

pytestmark = pytest.mark.django_db

R, A, T = roles.READ_MARKET, roles.OWN_ALERTS, roles.OWN_TOKENS
OPEN = "open"  # anyone, signed in or not: no role involved
SIGNED_IN = "signed_in"  # Django's own login_required pages: any signed-in user
RULE = {"symbol": "AAPL", "condition": "price_above", "threshold": 1000.0}


@dataclass(frozen=True)
class Rest:
    action: str
    ok: int  # the answer when allowed
    body: dict | None = None


# Every operation of /api/schema/: (method, path as the schema names it) -> its rule.
REST: dict[tuple[str, str], Rest] = {
    ("GET", "/api/v1/"): Rest(R, 200),
    ("GET", "/api/v1/stocks/"): Rest(R, 200),
    ("GET", "/api/v1/stocks/{symbol}/price/"): Rest(R, 200),
    ("GET", "/api/v1/stocks/{symbol}/history/"): Rest(R, 200),
    ("GET", "/api/v1/stocks/{symbol}/indicators/"): Rest(R, 200),
    ("GET", "/api/v1/stocks/{symbol}/indicators/history/"): Rest(R, 200),
    ("GET", "/api/v1/stocks/{symbol}/bars/"): Rest(R, 200),
    ("GET", "/api/v1/market/overview/"): Rest(R, 200),
    ("GET", "/api/v1/alerts/rules/"): Rest(A, 200),
    ("GET", "/api/v1/alerts/rules/{id}/"): Rest(A, 200),
    ("POST", "/api/v1/alerts/rules/"): Rest(A, 201, RULE),
    ("PUT", "/api/v1/alerts/rules/{id}/"): Rest(A, 200, {**RULE, "threshold": 999.0}),
    ("PATCH", "/api/v1/alerts/rules/{id}/"): Rest(A, 200, {"active": False}),
    ("DELETE", "/api/v1/alerts/rules/{id}/"): Rest(A, 204),
    ("GET", "/api/v1/alerts/events/"): Rest(A, 200),
    ("GET", "/api/v1/alerts/events/{id}/"): Rest(A, 200),
    ("POST", "/api/v1/alerts/events/{id}/acknowledge/"): Rest(A, 200),
    ("POST", "/api/v1/alerts/events/acknowledge/"): Rest(A, 200, {"ids": "{event}"}),
    ("GET", "/api/v1/auth/token/"): Rest(T, 200),
    ("POST", "/api/v1/auth/token/"): Rest(T, 201),
    ("DELETE", "/api/v1/auth/token/"): Rest(T, 204),
    ("GET", "/api/v1/tokens/"): Rest(T, 200),
    ("POST", "/api/v1/tokens/"): Rest(T, 201, {"name": "matrix", "scopes": ["read"]}),
    ("GET", "/api/v1/tokens/{id}/"): Rest(T, 200),
    ("DELETE", "/api/v1/tokens/{id}/"): Rest(T, 204),
    # The gateway (docs/polygon.md): market data, by API key.
    ("GET", "/v2/aggs/ticker/{symbol}/range/{multiplier}/{timespan}/{from}/{to}"): Rest(R, 200),
    ("GET", "/v2/aggs/ticker/{symbol}/prev"): Rest(R, 200),
    ("GET", "/v2/aggs/grouped/locale/us/market/stocks/{date}"): Rest(R, 200),
    ("GET", "/v2/last/trade/{symbol}"): Rest(R, 200),
    ("GET", "/v2/last/nbbo/{symbol}"): Rest(R, 404),  # no quotes stored: allowed, not found
    ("GET", "/v3/trades/{symbol}"): Rest(R, 200),
    ("GET", "/v3/reference/tickers"): Rest(R, 200),
    ("GET", "/v3/reference/tickers/{symbol}"): Rest(R, 200),
    ("GET", "/v2/snapshot/locale/us/markets/stocks/tickers"): Rest(R, 200),
    ("GET", "/v2/snapshot/locale/us/markets/stocks/tickers/{symbol}"): Rest(R, 200),
    ("GET", "/v1/indicators/sma/{symbol}"): Rest(R, 200),
    ("GET", "/v1/indicators/ema/{symbol}"): Rest(R, 200),
    ("GET", "/v1/indicators/rsi/{symbol}"): Rest(R, 200),
    ("GET", "/v1/indicators/macd/{symbol}"): Rest(R, 200),
}
# Writes after reads, deletes last (the token's own last of all), so each operation finds
# what it needs still there.
_ORDER = {"GET": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}


def schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_every_rest_operation_has_a_rule():
    operations = schema_operations()
    assert sorted(operations - set(REST)) == [], "operations without a rule in REST"
    assert sorted(set(REST) - operations) == [], "rules of operations that no longer exist"


def refused(who: str) -> int:
    """An API's refusal: 401 to a caller who has not signed in, 403 to one who has."""
    return 401 if who == ANONYMOUS else 403


def own_objects(user) -> dict[str, int]:
    """A rule and an event of `user` (a rule left from an earlier role counts as theirs too),
    and a second rule for the DELETE."""
    if user is None:
        return {"rule": 1, "doomed": 2, "event": 1, "token": 1}
    rules = AlertRule.objects
    rule = rules.create(owner=user, symbol_id="AAPL", condition="price_above", threshold=1e3)
    doomed = rules.create(owner=user, symbol_id="AAPL", condition="price_below", threshold=1.0)
    event = AlertEvent.objects.create(
        rule=rule, owner=user, symbol="AAPL", ts=NOW, condition="price_above", price=1001.0,
        value=1001.0,
    )  # fmt: skip
    token, _ = api_token_create(user=user, name="own", scopes=[ApiToken.READ])
    return {"rule": rule.pk, "doomed": doomed.pk, "event": event.pk, "token": token.pk}


def concrete(method: str, path: str, ids: dict[str, int]) -> str:
    day = NOW.date().isoformat()
    if "{id}" in path:
        kind = (
            "event" if "/events/" in path
            else "token" if "/tokens/" in path
            else "doomed" if method == "DELETE"
            else "rule"
        )  # fmt: skip
        path = path.replace("{id}", str(ids[kind]))
    values = {"symbol": "AAPL", "date": day, "multiplier": "1", "timespan": "minute",
              "from": "2020-01-01", "to": "2199-01-01"}  # fmt: skip
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


@pytest.mark.parametrize("public", PUBLIC, ids=PUBLIC_IDS)
@pytest.mark.parametrize("who", WHO)
def test_rest_answers_as_the_role_table_says(who, public, settings, market_data):
    settings.MARKETFLUX_PUBLIC_READ = public
    user = make_user(who)
    ids = own_objects(user)
    api = APIClient()  # /api/v1: a browser's session
    gateway = APIClient()  # the gateway: an API key, as the vendor's clients send it
    if user is not None:
        api.force_login(user)
        gateway.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
    wrong = []
    for method, path in sorted(REST, key=lambda op: (_ORDER[op[0]], "token" in op[1])):
        rule = REST[method, path]
        client = api if path.startswith("/api/") else gateway
        url = concrete(method, path, ids)
        body = {k: [ids["event"]] if v == "{event}" else v for k, v in (rule.body or {}).items()}
        response = getattr(client, method.lower())(url, body or None, format="json")
        expected = rule.ok if allowed(who, rule.action, public) else refused(who)
        if response.status_code != expected:
            wrong.append((method, url, expected, response.status_code))
    assert wrong == []


# Pages: every route of the URL resolver but the API's, the gateway's and the admin's
# (above and below). Route -> (method, path, action, the answer when allowed, refusal).
LOGIN, ADMIN_LOGIN, JSON, JSON403, API = "login", "admin login", "json", "json 403", "api"


@dataclass(frozen=True)
class Page:
    path: str
    action: str
    ok: int | None  # None: any answer but a refusal (/ready depends on workers, not roles)
    refusal: str = LOGIN
    method: str = "GET"
    body: dict | None = None


PAGES: dict[str, Page] = {
    "": Page("/", R, 200),
    "^sparklines/?$": Page("/sparklines?symbols=AAPL", R, 200, JSON),
    "^stocks/?$": Page("/stocks/?q=aapl", R, 302),  # to /stocks/AAPL/
    "^stocks/(?P<symbol>[^/]+)/$": Page("/stocks/AAPL/", R, 200),
    "^stocks/(?P<symbol>[^/]+)$": Page("/stocks/aapl", R, 200),
    "alerts/": Page("/alerts/", A, 200),
    "alerts/rules/<int:pk>/active": Page(
        "/alerts/rules/{rule}/active", A, 302, method="POST", body={"active": "false"}
    ),
    "alerts/rules/<int:pk>/delete": Page("/alerts/rules/{doomed}/delete", A, 302, method="POST"),
    "alerts/events/<int:pk>/acknowledge": Page(
        "/alerts/events/{event}/acknowledge", A, 302, method="POST"
    ),
    "account/tokens/": Page("/account/tokens/", T, 200),
    "account/tokens/<int:pk>/revoke": Page("/account/tokens/{token}/revoke", T, 302, method="POST"),
    "ops/": Page("/ops/", roles.VIEW_STATUS, 200, ADMIN_LOGIN),
    "ops/status.json": Page("/ops/status.json", roles.VIEW_STATUS, 200, JSON403),
    "^api/v1$": Page("/api/v1", R, 200, API),
    # Open to everyone: signing in, docs, health, the icon.
    "accounts/login/": Page("/accounts/login/", OPEN, 200),
    "accounts/logout/": Page("/accounts/logout/", OPEN, 405),  # POST only
    "accounts/password_change/": Page("/accounts/password_change/", SIGNED_IN, 200),
    "accounts/password_change/done/": Page("/accounts/password_change/done/", SIGNED_IN, 200),
    "accounts/password_reset/": Page("/accounts/password_reset/", OPEN, 200),
    "accounts/password_reset/done/": Page("/accounts/password_reset/done/", OPEN, 200),
    "accounts/reset/<uidb64>/<token>/": Page("/accounts/reset/MQ/set-password/", OPEN, 200),
    "accounts/reset/done/": Page("/accounts/reset/done/", OPEN, 200),
    "api-auth/login/": Page("/api-auth/login/", OPEN, 200),
    "api-auth/logout/": Page("/api-auth/logout/", OPEN, 405),  # POST only
    "^health/?$": Page("/health", OPEN, 200),
    "^ready/?$": Page("/ready", OPEN, None),
    "^metrics/?$": Page("/metrics", OPEN, 200),  # from loopback, as the test client is
    "^api/schema/?$": Page("/api/schema/", OPEN, 200),
    "^docs/?$": Page("/docs", OPEN, 200),
    "^redoc/?$": Page("/redoc", OPEN, 200),
    "favicon.ico": Page("/favicon.ico", OPEN, 301),
}


def page_routes() -> set[str]:
    """Every route of the resolver, but the API's (the schema's), the gateway's and the
    admin's."""

    def leaves(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from leaves(pattern.url_patterns, route)
            else:
                yield route, pattern

    return {
        route
        for route, pattern in leaves(get_resolver().url_patterns)
        if not route.startswith(("admin/", "api/v1/"))
        and not pattern.callback.__module__.startswith("apps.polygon")
    }


def test_every_page_has_a_rule():
    routes = page_routes()
    assert sorted(routes - set(PAGES)) == [], "pages without a rule in PAGES"
    assert sorted(set(PAGES) - routes) == [], "rules of pages that no longer exist"


def page_may(who: str, action: str, public: bool) -> bool:
    if action == OPEN:
        return True
    if action == SIGNED_IN:
        return who != ANONYMOUS
    return allowed(who, action, public)


def page_refusal(who: str, page: Page, path: str) -> tuple[int, str | None]:
    """(status, where it sends the visitor) for a refused visitor."""
    signed_in = who != ANONYMOUS
    # /ops/ sends whoever is not staff to the admin's login page, as the admin does (every
    # staff user here may see it); the market pages send anonymous visitors to the site's.
    if page.refusal == ADMIN_LOGIN or (page.refusal == LOGIN and not signed_in):
        login = "/accounts/login/" if page.refusal == LOGIN else "/admin/login/"
        return 302, f"{login}?next={path.replace('?', '%3F').replace('=', '%3D')}"
    if page.refusal == JSON403:
        return 403, None
    return (403 if signed_in else 401 if page.refusal in (JSON, API) else 302), None


@pytest.mark.parametrize("public", PUBLIC, ids=PUBLIC_IDS)
@pytest.mark.parametrize("who", WHO)
def test_pages_answer_as_the_role_table_says(who, public, settings, market_data):
    settings.MARKETFLUX_PUBLIC_READ = public
    user = make_user(who)
    ids = own_objects(user)
    client = Client()
    if user is not None:
        client.force_login(user)
    wrong = []
    for route, page in PAGES.items():
        path = page.path.format(**ids)
        response = getattr(client, page.method.lower())(path, page.body or {})
        got = (response.status_code, response.get("Location"))
        if page_may(who, page.action, public):
            refused_here = response.status_code in (401, 403) or "login/?next=" in (got[1] or "")
            if refused_here or (page.ok is not None and got[0] != page.ok):
                wrong.append((route, path, page.ok, got))
        else:
            expected = page_refusal(who, page, path)
            if got[0] != expected[0] or (expected[1] and got[1] != expected[1]):
                wrong.append((route, path, expected, got))
    assert wrong == []


def test_private_mode_sends_an_anonymous_visitor_to_login_with_nothing_of_the_market(
    settings, client, market_data
):
    settings.MARKETFLUX_PUBLIC_READ = False
    for path in ("/", "/stocks/AAPL/", "/stocks/aapl"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={path}"
        assert response.content == b""  # no price, no candle, no ticker: nothing at all


def test_a_viewer_gets_those_pages_with_the_price_and_candles_in_private_mode(
    settings, market_data
):
    """The control of the test above: the pages do carry the price and the candles when the
    visitor may read the market, so their absence above is the refusal's doing."""
    settings.MARKETFLUX_PUBLIC_READ = False
    client = Client()
    client.force_login(make_user(roles.VIEWER))
    symbol_page = client.get("/stocks/AAPL/").content.decode()
    assert 'id="symbol-initial"' in symbol_page
    assert price_text(LAST_AAPL_PRICE) in symbol_page
    assert '"candles"' in symbol_page
    home = client.get("/").content.decode()
    assert 'id="overview-initial"' in home
    assert price_text(LAST_AAPL_PRICE) in home


# The admin: every registered model's list page, for every kind of caller. Django's admin
# lets in staff only (operators and admins get is_staff with their role), then shows a
# model to whoever holds its view or change permission.


def admin_expected(who: str, model) -> int:
    role_perms = {p for a in actions_of(who) for p in roles.ACTIONS[a]}
    staff = who in roles.STAFF_ROLES or who == SUPERUSER
    if not staff:
        return 302  # to the admin's login page
    app, name = model._meta.app_label, model._meta.model_name
    wanted = {f"{app}.view_{name}", f"{app}.change_{name}"}
    return 200 if who == SUPERUSER or wanted & role_perms else 403


@pytest.mark.parametrize("who", WHO)
def test_the_admin_shows_each_model_to_whom_the_role_table_says(who, market_data):
    user = make_user(who)
    client = Client()
    if user is not None:
        client.force_login(user)
    index = client.get("/admin/")
    staff = who in roles.STAFF_ROLES or who == SUPERUSER
    assert index.status_code == (200 if staff else 302)
    wrong = []
    for model in admin.site._registry:
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = client.get(url)
        expected = admin_expected(who, model)
        if response.status_code != expected:
            wrong.append((url, expected, response.status_code))
        if expected == 302 and not response["Location"].startswith("/admin/login/"):
            wrong.append((url, "to the admin's login", response["Location"]))
    assert wrong == []


def test_an_operator_sees_symbols_sources_and_replays_and_no_users(market_data):
    client = Client()
    client.force_login(make_user(roles.OPERATOR))
    html = client.get("/admin/").content.decode()
    for listed in ("/admin/market/symbol/", "/admin/market/source/", "/admin/sources/replay/"):
        assert f'href="{listed}"' in html, listed
    for hidden in ("/admin/auth/user/", "/admin/auth/group/", "/admin/alerts/alertrule/"):
        assert f'href="{hidden}"' not in html, hidden
    assert client.get("/admin/auth/user/").status_code == 403


def test_an_analyst_cannot_enter_the_admin(market_data):
    client = Client()
    client.force_login(make_user(roles.ANALYST))
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"
    # The admin's login page says so rather than letting them in.
    page = client.get(response["Location"]).content.decode()
    assert "not authorized to access this page" in page


def test_staff_without_the_status_role_get_a_403_not_a_loop_through_the_admin_login(
    market_data,
):
    """The admin's login page sends staff straight back to `next`: /ops/ answers staff whose
    role lacks `view_status` with a 403 instead of sending them there."""
    staff = make_user(roles.VIEWER, "staff-viewer")
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    assert client.get("/ops/").status_code == 403
    assert client.get("/ops/status.json").status_code == 403
    assert client.get("/admin/").status_code == 200  # in, but shown no model
    assert client.get("/admin/market/symbol/").status_code == 403
