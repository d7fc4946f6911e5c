"""API tokens over REST (docs/security.md#api-tokens): scopes, expiry and revocation, the
`/api/v1/tokens/` endpoint, last use, the commands, legacy DRF tokens, and that the database
never holds a usable key. Real PostgreSQL and Redis, through Django's test client."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.accounts.models import ApiToken
from apps.accounts.tests.helpers import (
    API,
    bearer,
    columns_holding,
    issue,
    make_dead,
    text_columns,
    token_of,
)
from apps.alerts.models import AlertRule

MARKET_PATHS = [
    "stocks",
    "stocks/AAPL/price",
    "stocks/AAPL/history",
    "stocks/AAPL/indicators",
    "stocks/AAPL/bars",
    "market/overview",
    "",  # the API root
]
RULES = f"{API}/alerts/rules/"
TOKENS = f"{API}/tokens/"
GATEWAY = "/v3/reference/tickers"
RULE = {"symbol": "AAPL", "condition": "price_above", "threshold": 230}


def post_json(client, path: str, body: dict, **headers):
    return client.post(path, body, content_type="application/json", headers=headers)


# Scopes


def test_a_read_token_reads_market_data_and_cannot_create_an_alert_rule(
    client, market, private, alice
):
    key = issue(alice, "read")
    for path in MARKET_PATHS:
        assert client.get(f"{API}/{path}", headers=bearer(key)).status_code == 200, path
    assert client.get(RULES, headers=bearer(key)).status_code == 200  # reading is reading

    refused = post_json(client, RULES, RULE, **bearer(key))
    assert refused.status_code == 403
    assert "alerts:write" in refused.json()["detail"]
    assert not AlertRule.objects.exists()


def test_an_alerts_write_token_manages_rules_but_reads_no_market_data(
    client, market, private, alice
):
    key = issue(alice, "alerts:write")
    created = post_json(client, RULES, RULE, **bearer(key))
    assert created.status_code == 201, created.content
    rule = created.json()["id"]
    changed = client.patch(
        f"{RULES}{rule}", {"active": False}, content_type="application/json", headers=bearer(key)
    )
    assert changed.status_code == 200
    assert client.delete(f"{RULES}{rule}", headers=bearer(key)).status_code == 204
    assert not AlertRule.objects.exists()
    # Reading needs `read`: the token was given only what it needs to write rules.
    denied = client.get(f"{API}/stocks", headers=bearer(key))
    assert denied.status_code == 403
    assert "'read'" in denied.json()["detail"]


def test_an_admin_token_does_everything_its_user_may(client, market, private, alice):
    key = issue(alice, "admin")
    assert client.get(f"{API}/stocks/AAPL/price", headers=bearer(key)).status_code == 200
    assert post_json(client, RULES, RULE, **bearer(key)).status_code == 201
    made = post_json(client, TOKENS, {"name": "child", "scopes": ["read"]}, **bearer(key))
    assert made.status_code == 201
    assert client.get(GATEWAY, headers=bearer(key)).status_code == 200


def test_keys_are_read_after_bearer_or_token(client, market, private, alice):
    key = issue(alice, "read")
    for keyword in ("Bearer", "Token", "bearer"):
        answer = client.get(f"{API}/stocks", headers={"authorization": f"{keyword} {key}"})
        assert answer.status_code == 200, keyword


# Expired, revoked, unknown


@pytest.mark.parametrize("public_read", [True, False], ids=["public", "private"])
@pytest.mark.parametrize("state", ["expired", "revoked"])
def test_an_expired_or_revoked_token_gets_401_saying_so(
    client, market, redis_client, settings, alice, state, public_read
):
    settings.MARKETFLUX_PUBLIC_READ = public_read
    key = issue(alice, "admin", expires=timezone.now() + timedelta(days=1))
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 200
    make_dead(key, state)
    for path in (f"{API}/stocks", f"{API}/stocks/AAPL/price", RULES, TOKENS, f"{API}/"):
        answer = client.get(path, headers=bearer(key))
        assert answer.status_code == 401, path
        assert state in answer.json()["detail"]
        assert "Bearer" in answer["WWW-Authenticate"]
    assert post_json(client, RULES, RULE, **bearer(key)).status_code == 401
    # The gateway too, even with public read on, where an unknown key reads as anonymous.
    gateway = client.get(GATEWAY, headers=bearer(key))
    assert gateway.status_code == 401
    assert state in gateway.json()["error"]
    assert client.get(GATEWAY, {"apiKey": key}).status_code == 401


def test_a_token_expiring_later_works_until_then(client, market, private, alice):
    key = issue(alice, "read", expires=timezone.now() + timedelta(minutes=5))
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 200


def test_an_unknown_or_malformed_key_gets_401(client, market, private, alice):
    key = issue(alice, "read")
    for bad in (key[:-1] + ("A" if key[-1] != "A" else "B"), "mfx_" + "x" * 43, "x" * 300):
        answer = client.get(f"{API}/stocks", headers=bearer(bad))
        assert answer.status_code == 401, bad
        assert answer.json()["detail"] == "Invalid token."
    assert client.get(f"{API}/stocks", headers={"authorization": "Bearer"}).status_code == 401


def test_a_token_of_a_deactivated_user_gets_401(client, market, private, alice):
    key = issue(alice, "read")
    alice.is_active = False
    alice.save()
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 401


def test_the_gateway_needs_the_read_scope(client, market, redis_client, alice):
    key = issue(alice, "alerts:write")
    answer = client.get(GATEWAY, headers=bearer(key))
    assert answer.status_code == 403
    assert "'read'" in answer.json()["error"]
    assert client.get(GATEWAY, headers=bearer("unknown-key")).status_code == 200  # public read


# Last used


def test_last_used_moves_and_is_written_at_most_once_a_minute(client, market, private, alice):
    key = issue(alice, "read")
    assert token_of(key).last_used is None
    before = timezone.now()
    client.get(f"{API}/stocks", headers=bearer(key))
    first = token_of(key).last_used
    assert first is not None
    assert before <= first <= timezone.now()

    with CaptureQueriesContext(connection) as queries:
        client.get(f"{API}/stocks", headers=bearer(key))
    writes = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "accounts_apitoken"')]
    assert writes == []
    assert token_of(key).last_used == first

    # A minute later, the next use is recorded.
    ApiToken.objects.filter(pk=token_of(key).pk).update(last_used=first - timedelta(minutes=2))
    client.get(f"{API}/stocks", headers=bearer(key))
    assert token_of(key).last_used > first
    client.force_login(alice)
    (listed,) = client.get(TOKENS).json()["results"]
    assert listed["last_used"] is not None


# The tokens endpoint


def test_a_created_key_is_in_the_answer_once_and_never_again(client, market, private, alice):
    client.force_login(alice)
    created = post_json(client, TOKENS, {"name": "backtester", "scopes": ["read", "read"]})
    assert created.status_code == 201
    assert "no-store" in created["Cache-Control"]
    body = created.json()
    key = body["key"]
    assert key.startswith("mfx_")
    assert len(key) >= 47
    assert body["prefix"] == key[:12]
    assert body["scopes"] == ["read"]
    assert body["expires"] is body["revoked"] is body["last_used"] is None

    for answer in (client.get(TOKENS), client.get(f"{TOKENS}{body['id']}")):
        assert answer.status_code == 200
        assert key not in answer.content.decode()
        assert key[12:20] not in answer.content.decode()
    (listed,) = client.get(TOKENS).json()["results"]
    assert "key" not in listed
    assert listed["name"] == "backtester"

    client.logout()
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 200


def test_delete_revokes_and_the_token_stays_listed(client, market, private, alice):
    client.force_login(alice)
    made = post_json(client, TOKENS, {"name": "ci", "scopes": ["admin"]}).json()
    assert client.delete(f"{TOKENS}{made['id']}").status_code == 204
    assert client.delete(f"{TOKENS}{made['id']}").status_code == 204  # again is fine
    (listed,) = client.get(TOKENS).json()["results"]
    assert listed["revoked"] is not None
    client.logout()
    assert client.get(f"{API}/stocks", headers=bearer(made["key"])).status_code == 401


def test_a_token_may_revoke_itself_with_admin_scope(client, market, private, alice):
    key = issue(alice, "admin")
    mine = token_of(key).pk
    assert client.delete(f"{TOKENS}{mine}", headers=bearer(key)).status_code == 204
    assert client.get(TOKENS, headers=bearer(key)).status_code == 401


def test_only_a_session_or_an_admin_token_manages_tokens(client, redis_client, alice):
    assert client.get(TOKENS).status_code == 401
    for scopes in (["read"], ["alerts:write"], ["read", "alerts:write"]):
        key = issue(alice, *scopes)
        assert client.get(TOKENS, headers=bearer(key)).status_code == 403
        made = post_json(client, TOKENS, {"name": "x", "scopes": ["admin"]}, **bearer(key))
        assert made.status_code == 403
        assert client.delete(f"{TOKENS}{token_of(key).pk}", headers=bearer(key)).status_code == 403
    assert ApiToken.objects.filter(revoked__isnull=False).count() == 0
    assert client.get(TOKENS, headers=bearer(issue(alice, "admin"))).status_code == 200


def test_a_user_sees_and_revokes_only_their_own_tokens(client, redis_client, alice, bob):
    bobs = issue(bob, "read")
    client.force_login(alice)
    assert client.get(TOKENS).json()["results"] == []
    theirs = token_of(bobs).pk
    assert client.get(f"{TOKENS}{theirs}").status_code == 404
    assert client.delete(f"{TOKENS}{theirs}").status_code == 404
    assert client.get(f"{TOKENS}nope").status_code == 404
    assert token_of(bobs).revoked is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["write"]}, "scopes"),
        ({"name": "x", "scopes": ["read", "root"]}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": "read"}, "scopes"),
        ({"name": "x"}, "scopes"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "   ", "scopes": ["read"]}, "name"),
        ({"name": "n" * 65, "scopes": ["read"]}, "name"),
        ({"scopes": ["read"]}, "name"),
        ({"name": "taken", "scopes": ["read"]}, "name"),
        ({"name": "x", "scopes": ["read"], "expires": "2020-01-01T00:00:00Z"}, "expires"),
        ({"name": "x", "scopes": ["read"], "expires": "tomorrow"}, "expires"),
    ],
)
def test_a_bad_new_token_is_a_400_naming_the_field(client, redis_client, alice, body, field):
    issue(alice, "read", name="taken")
    client.force_login(alice)
    answer = post_json(client, TOKENS, body)
    assert answer.status_code == 400
    assert field in answer.json()
    assert ApiToken.objects.count() == 1


def test_a_revoked_tokens_name_is_still_taken(client, redis_client, alice):
    key = issue(alice, "read", name="ci")
    make_dead(key, "revoked")
    client.force_login(alice)
    answer = post_json(client, TOKENS, {"name": "ci", "scopes": ["read"]})
    assert answer.status_code == 400
    assert "revoked" in answer.json()["name"][0]


def test_the_tokens_endpoint_is_in_the_schema(client, redis_client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = schema["paths"]["/api/v1/tokens/"]
    assert set(operations) >= {"get", "post"}
    assert "201" in operations["post"]["responses"]
    assert set(schema["paths"]["/api/v1/tokens/{id}/"]) >= {"get", "delete"}
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"


# The database never holds a usable key


def test_the_database_never_holds_a_usable_key(client, market, private, alice):
    client.force_login(alice)
    by_api = post_json(client, TOKENS, {"name": "api", "scopes": ["read"]}).json()["key"]
    by_command = apitoken("create", "alice", "--name", "cli", "--scope", "admin")
    legacy = Token.objects.create(user=alice).key
    for key in (by_api, by_command):  # used, so last_used and the logs have had their turn
        assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 200

    scanned = {table for table, _ in text_columns()}
    assert {"accounts_apitoken", "authtoken_token", "django_session"} <= scanned
    assert columns_holding(legacy) == ["authtoken_token.key"]  # the scan finds a stored key
    call_command("migrate_tokens", stdout=StringIO())
    for key in (by_api, by_command, legacy):
        assert columns_holding(key) == [], key
        assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 200


# Commands


def apitoken(*args: str) -> str:
    out = StringIO()
    call_command("apitoken", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def test_the_apitoken_command_creates_lists_and_revokes(client, market, private, alice):
    key = apitoken("create", "alice", "--name", "ci", "--scope", "read", "--expires", "30d")
    assert key.startswith("mfx_")
    assert "\n" not in key  # the key alone: KEY=$(manage.py apitoken create ...)
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 200
    assert post_json(client, RULES, RULE, **bearer(key)).status_code == 403
    token = token_of(key)
    assert timedelta(days=29) < token.expires - timezone.now() <= timedelta(days=30)

    two = apitoken(
        "create", "alice", "--name", "alerts", "--scope", "read", "--scope", "alerts:write",
        "--expires", "2099-06-30",
    )  # fmt: skip
    assert token_of(two).scopes == ["read", "alerts:write"]
    assert token_of(two).expires.isoformat() == "2099-06-30T00:00:00+00:00"

    listing = apitoken("list", "alice")
    assert key not in listing
    assert two not in listing
    assert f"{key[:12]}…" in listing
    assert "alerts:write" in listing
    assert apitoken("list").count("alice") == 2

    assert "revoked" in apitoken("revoke", "alice", "ci")
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 401
    assert client.get(f"{API}/stocks", headers=bearer(two)).status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "nobody", "--name", "x", "--scope", "read"], "nobody"),
        (["create", "alice", "--name", "x", "--scope", "write"], "write"),
        (["create", "alice", "--name", "x"], "--scope"),
        (
            ["create", "alice", "--name", "x", "--scope", "read", "--expires", "2020-01-01"],
            "future",
        ),
        (["create", "alice", "--name", "x", "--scope", "read", "--expires", "soon"], "soon"),
        (["create", "alice", "--name", "taken", "--scope", "read"], "taken"),
        (["revoke", "alice", "nothing"], "nothing"),
        (["alice"], "alice"),  # the old form, which printed a stored key, is gone
    ],
)
def test_the_apitoken_command_refuses_bad_input(alice, args, message):
    issue(alice, "read", name="taken")
    with pytest.raises(CommandError, match=message):
        apitoken(*args)
    assert ApiToken.objects.count() == 1


# Legacy DRF tokens


def test_a_legacy_token_keeps_working_before_and_after_migration(client, market, private, alice):
    legacy = Token.objects.create(user=alice)
    legacy_created = legacy.created
    key = legacy.key
    for keyword in ("Token", "Bearer"):
        headers = {"authorization": f"{keyword} {key}"}
        assert client.get(f"{API}/stocks", headers=headers).status_code == 200
    assert post_json(client, RULES, RULE, authorization=f"Token {key}").status_code == 201
    assert client.get(GATEWAY, headers=bearer(key)).status_code == 200

    out = StringIO()
    call_command("migrate_tokens", stdout=out)
    assert "migrated 1" in out.getvalue()
    assert not Token.objects.exists()
    token = token_of(key)
    assert (token.user, token.name, token.scopes) == (alice, "legacy", ["admin"])
    assert token.prefix == key[:8]
    assert token.created == legacy_created

    # The same key, now an API token: every door still takes it, with every right it had.
    assert client.get(f"{API}/stocks", headers={"authorization": f"Token {key}"}).status_code == 200
    assert post_json(client, RULES, RULE, authorization=f"Token {key}").status_code == 201
    assert client.get(GATEWAY, headers=bearer(key)).status_code == 200
    assert token_of(key).last_used is not None
    # Revoked like any other token.
    client.force_login(alice)
    assert client.delete(f"{TOKENS}{token.pk}").status_code == 204
    client.logout()
    assert client.get(f"{API}/stocks", headers=bearer(key)).status_code == 401


def test_migrating_again_moves_nothing_and_keeps_names_unique(alice, bob):
    issue(alice, "read", name="legacy")
    Token.objects.create(user=alice)
    Token.objects.create(user=bob)
    out = StringIO()
    call_command("migrate_tokens", stdout=out)
    assert "migrated 2" in out.getvalue()
    assert set(ApiToken.objects.filter(user=alice).values_list("name", flat=True)) == {
        "legacy",
        "legacy-2",
    }
    call_command("migrate_tokens", stdout=out)
    assert "migrated 0" in out.getvalue()
    assert ApiToken.objects.count() == 3
