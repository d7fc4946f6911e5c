"""`/api/v1/alerts/`: a user's own rules (CRUD) and events, as a program uses them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from auditlog.models import LogEntry as AuditEntry
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.accounts.audit import entries_for
from apps.alerts.models import AlertEvent, AlertRule
from apps.testing.factories import AlertEventFactory, AlertRuleFactory

# Rules name symbols: every test has the default market (and alice and bob from conftest).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("market")]

API = "/api/v1/alerts"
RULE_FIELDS = {
    "id", "symbol", "condition", "threshold", "window_seconds", "frequency",
    "cooldown_seconds", "expires_at", "message", "active", "last_fired_at",
    "created_at", "updated_at",
}  # fmt: skip
EVENT_FIELDS = {
    "id", "rule", "symbol", "ts", "condition", "price", "value", "message", "acknowledged",
}  # fmt: skip
T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _redis(redis_client):
    """Throttle counters and the rules version live in Redis: start each test empty."""


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def as_alice(alice) -> APIClient:
    return client_for(alice)


@pytest.fixture
def as_bob(bob) -> APIClient:
    return client_for(bob)


def api_audits(**filters) -> list[AuditEntry]:
    """The audit log's entries of alert rule changes made through the API."""
    return list(entries_for("alerts.AlertRule").filter(additional_data__door="api", **filters))


def make_rule(owner, symbol="AAPL", **fields) -> AlertRule:
    return AlertRuleFactory(owner=owner, symbol_id=symbol, **fields)


def make_event(rule: AlertRule, ts: datetime, *, symbol: str | None = None, **fields):
    defaults = {"price": 201.5, "value": 201.5, "message": "AAPL above 200"}
    return AlertEventFactory(rule=rule, ts=ts, symbol=symbol or rule.symbol_id, **defaults | fields)


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


# Who may call.

ENDPOINTS = [
    ("get", "rules"),
    ("post", "rules"),
    ("get", "rules/1"),
    ("put", "rules/1"),
    ("patch", "rules/1"),
    ("delete", "rules/1"),
    ("get", "events"),
    ("get", "events/1"),
    ("post", "events/1/acknowledge"),
    ("post", "events/acknowledge"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_anonymous_callers_get_401_even_with_public_market_data(
    settings, client, alice, method, path
):
    settings.MARKETFLUX_PUBLIC_READ = True
    rule = make_rule(alice)
    make_event(rule, T0)
    response = getattr(client, method)(f"{API}/{path}".replace("/1", f"/{rule.pk}"))
    assert response.status_code == 401
    assert response.json()["detail"]
    assert AlertRule.objects.count() == 1


def test_a_token_is_enough(alice):
    token = Token.objects.create(user=alice)
    client = APIClient(headers={"authorization": f"Token {token.key}"})
    response = client.post(f"{API}/rules", {"symbol": "msft", "condition": "anomaly"})
    assert response.status_code == 201, response.content
    assert client.get(f"{API}/rules/").json()["results"][0]["symbol"] == "MSFT"


# Rules: create, read, change, delete.


def test_create_answers_the_stored_rule(as_alice, alice):
    before = timezone.now()
    response = as_alice.post(
        f"{API}/rules/",
        {"symbol": "aapl", "condition": "price_above", "threshold": 200, "message": "{symbol}!"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == RULE_FIELDS
    assert body["symbol"] == "AAPL"
    assert body["condition"] == "price_above"
    assert body["threshold"] == 200
    assert body["frequency"] == "once_per_bar"  # the default
    assert body["cooldown_seconds"] == 0
    assert body["active"] is True
    assert body["last_fired_at"] is None
    assert utc(body["created_at"]) >= before
    rule = AlertRule.objects.get(pk=body["id"])
    assert (rule.owner, rule.symbol_id, rule.threshold, rule.message) == (
        alice, "AAPL", 200.0, "{symbol}!"
    )  # fmt: skip


def test_star_means_every_symbol(as_alice):
    response = as_alice.post(f"{API}/rules", {"symbol": "*", "condition": "rsi_above",
                                              "threshold": 70})  # fmt: skip
    assert response.status_code == 201, response.content
    assert response.json()["symbol"] == "*"
    assert AlertRule.objects.get().symbol_id is None
    assert as_alice.get(f"{API}/rules/{response.json()['id']}").json()["symbol"] == "*"


def test_list_shows_own_rules_newest_first(as_alice, alice, bob):
    older = make_rule(alice, "AAPL")
    newer = make_rule(alice, None, condition="anomaly", threshold=None)
    make_rule(bob, "AAPL")
    body = as_alice.get(f"{API}/rules").json()
    assert body["count"] == 2
    assert [r["id"] for r in body["results"]] == [newer.pk, older.pk]
    assert [r["symbol"] for r in body["results"]] == ["*", "AAPL"]


def test_put_replaces_and_patch_changes_some_fields(as_alice, alice):
    rule = make_rule(alice, message="old")
    put = as_alice.put(
        f"{API}/rules/{rule.pk}/",
        {"symbol": "TSLA", "condition": "change_pct_down", "threshold": 3,
         "window_seconds": 600, "frequency": "every_time", "cooldown_seconds": 120},
    )  # fmt: skip
    assert put.status_code == 200, put.content
    assert put.json()["symbol"] == "TSLA"
    assert put.json()["window_seconds"] == 600
    patch = as_alice.patch(f"{API}/rules/{rule.pk}", {"active": False, "message": "new"})
    assert patch.status_code == 200, patch.content
    rule.refresh_from_db()
    assert (rule.symbol_id, rule.condition, rule.threshold, rule.window_seconds) == (
        "TSLA", "change_pct_down", 3.0, 600
    )  # fmt: skip
    assert (rule.frequency, rule.cooldown_seconds, rule.active, rule.message) == (
        "every_time", 120, False, "new"
    )  # fmt: skip
    assert as_alice.get(f"{API}/rules/{rule.pk}").json() == patch.json()


def test_put_resets_what_it_leaves_out(as_alice, alice):
    rule = make_rule(
        alice, condition="change_pct_up", threshold=2.0, window_seconds=300,
        frequency="every_time", cooldown_seconds=60, message="m", active=False,
    )  # fmt: skip
    response = as_alice.put(f"{API}/rules/{rule.pk}", {"symbol": "AAPL", "condition": "anomaly"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["threshold"], body["window_seconds"], body["message"]) == (None, None, "")
    assert (body["frequency"], body["cooldown_seconds"], body["active"]) == (
        "once_per_bar",
        0,
        True,
    )
    rule.refresh_from_db()
    assert (rule.condition, rule.window_seconds, rule.active) == ("anomaly", None, True)


def test_delete_removes_the_rule_and_its_events(as_alice, alice):
    rule = make_rule(alice)
    make_event(rule, T0)
    assert as_alice.delete(f"{API}/rules/{rule.pk}").status_code == 204
    assert not AlertRule.objects.exists()
    assert not AlertEvent.objects.exists()
    assert as_alice.get(f"{API}/rules/{rule.pk}").status_code == 404


# Validation: a 400 naming the field, and nothing stored.

VALID = {"symbol": "AAPL", "condition": "price_above", "threshold": 200}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"symbol": "XYZ"}, "symbol"),
        ({"symbol": "not a ticker!"}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"condition": "price_sideways"}, "condition"),
        ({"frequency": "sometimes"}, "frequency"),
        ({"threshold": None}, "threshold"),
        ({"threshold": -5}, "threshold"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": "abc"}, "threshold"),
        ({"condition": "rsi_above", "threshold": 150}, "threshold"),
        ({"condition": "anomaly", "threshold": 3}, "threshold"),
        ({"condition": "change_pct_up", "threshold": 2}, "window_seconds"),
        ({"condition": "change_pct_up", "threshold": 2, "window_seconds": -1}, "window_seconds"),
        ({"window_seconds": 60}, "window_seconds"),
        ({"cooldown_seconds": -1}, "cooldown_seconds"),
        ({"cooldown_seconds": 8 * 24 * 3600}, "cooldown_seconds"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "next tuesday"}, "expires_at"),
        ({"message": "{symbol} {oops}"}, "message"),
        ({"message": "{price:.2f}"}, "message"),
        ({"message": "{unclosed"}, "message"),
        ({"message": "x" * 201}, "message"),
    ],
)
def test_an_invalid_rule_is_a_400_naming_its_field(as_alice, change, field):
    response = as_alice.post(f"{API}/rules", {**VALID, **change})
    assert response.status_code == 400, response.content
    errors = response.json()
    assert set(errors) == {field}, errors
    assert errors[field]
    assert all(isinstance(m, str) and m for m in errors[field])
    assert not AlertRule.objects.exists()
    assert not api_audits()


def test_missing_symbol_and_condition_are_named(as_alice):
    response = as_alice.post(f"{API}/rules", {"threshold": 5})
    assert response.status_code == 400
    assert set(response.json()) == {"symbol", "condition"}


def test_a_patch_is_checked_against_the_whole_rule(as_alice, alice):
    rule = make_rule(alice)  # price_above 200
    response = as_alice.patch(f"{API}/rules/{rule.pk}", {"condition": "anomaly"})
    assert response.status_code == 400
    assert set(response.json()) == {"threshold"}
    rule.refresh_from_db()
    assert rule.condition == "price_above"
    ok = as_alice.patch(f"{API}/rules/{rule.pk}", {"condition": "anomaly", "threshold": None})
    assert ok.status_code == 200, ok.content


def test_an_expiry_already_past_is_only_checked_when_changed(as_alice, alice):
    rule = make_rule(alice, expires_at=timezone.now() - timedelta(days=1))
    assert as_alice.patch(f"{API}/rules/{rule.pk}", {"message": "still"}).status_code == 200
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    response = as_alice.patch(f"{API}/rules/{rule.pk}", {"expires_at": past})
    assert response.status_code == 400
    assert set(response.json()) == {"expires_at"}
    future = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = as_alice.patch(f"{API}/rules/{rule.pk}", {"expires_at": future.isoformat()})
    assert response.status_code == 200
    assert utc(response.json()["expires_at"]) == future


# Ownership: another user's rules and events do not exist for you.


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_another_users_rule_is_a_404(as_alice, bob, method):
    theirs = make_rule(bob, message="bob's")
    response = getattr(as_alice, method)(f"{API}/rules/{theirs.pk}", {**VALID, "message": "mine"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.message == "bob's"
    assert not api_audits()


def test_another_users_events_are_invisible(as_alice, as_bob, alice, bob):
    mine = make_event(make_rule(alice), T0)
    theirs = make_event(make_rule(bob), T0)
    listed = as_alice.get(f"{API}/events").json()
    assert [e["id"] for e in listed["results"]] == [mine.pk]
    assert as_alice.get(f"{API}/events/{theirs.pk}").status_code == 404
    assert as_alice.post(f"{API}/events/{theirs.pk}/acknowledge").status_code == 404
    bulk = as_alice.post(f"{API}/events/acknowledge", {"ids": [theirs.pk]})
    assert bulk.json() == {"acknowledged": 0}
    theirs.refresh_from_db()
    assert theirs.acknowledged is False
    assert as_bob.get(f"{API}/events/{theirs.pk}").status_code == 200


def test_ids_that_are_not_numbers_are_404s(as_alice):
    for path in ["rules/abc", "rules/-1", "rules/99999999999999999999999", "events/abc",
                 "events/99999999999999999999999", "events/abc/acknowledge"]:  # fmt: skip
        method = as_alice.post if path.endswith("acknowledge") else as_alice.get
        assert method(f"{API}/{path}").status_code == 404, path


# Events.


def test_events_newest_first_in_the_alert_shape(as_alice, alice):
    rule = make_rule(alice)
    first = make_event(rule, T0)
    second = make_event(rule, T0 + timedelta(seconds=1, microseconds=500_000), price=202.25)
    body = as_alice.get(f"{API}/events/").json()
    assert body["count"] == 2
    assert [e["id"] for e in body["results"]] == [second.pk, first.pk]
    latest = body["results"][0]
    assert set(latest) == EVENT_FIELDS
    assert latest == {
        "id": second.pk, "rule": rule.pk, "symbol": "AAPL", "ts": "2026-12-01T15:00:01.500000Z",
        "condition": "price_above", "price": 202.25, "value": 201.5,
        "message": "AAPL above 200", "acknowledged": False,
    }  # fmt: skip
    assert as_alice.get(f"{API}/events/{first.pk}").json()["ts"] == "2026-12-01T15:00:00Z"


def test_events_are_paginated(as_alice, alice):
    rule = make_rule(alice)
    for i in range(5):
        make_event(rule, T0 + timedelta(seconds=i))
    page = as_alice.get(f"{API}/events", {"page_size": 2, "page": 2}).json()
    assert page["count"] == 5
    assert [utc(e["ts"]) for e in page["results"]] == [T0 + timedelta(seconds=2),
                                                       T0 + timedelta(seconds=1)]  # fmt: skip


def test_event_filters(as_alice, alice):
    aapl = make_rule(alice, "AAPL")
    tsla = make_rule(alice, "TSLA", condition="price_below", threshold=100)
    a0 = make_event(aapl, T0)
    a1 = make_event(aapl, T0 + timedelta(minutes=1), acknowledged=True)
    t2 = make_event(tsla, T0 + timedelta(minutes=2))

    def ids(**query) -> list[int]:
        response = as_alice.get(f"{API}/events", query)
        assert response.status_code == 200, (query, response.content)
        return [e["id"] for e in response.json()["results"]]

    assert ids() == [t2.pk, a1.pk, a0.pk]
    assert ids(symbol="aapl") == [a1.pk, a0.pk]
    assert ids(since="2026-12-01T15:01:00Z") == [t2.pk, a1.pk]
    assert ids(until="2026-12-01T15:01:00Z") == [a0.pk]
    assert ids(since="2026-12-01T10:01:00-05:00", until="2026-12-01T15:02:00Z") == [a1.pk]
    assert ids(acknowledged="true") == [a1.pk]
    assert ids(acknowledged="false") == [t2.pk, a0.pk]
    assert ids(rule=tsla.pk) == [t2.pk]
    assert ids(symbol="MSFT") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "0001-01-01T00:00:00+05:00"}, "since"),
        ({"acknowledged": "yes"}, "acknowledged"),
        ({"acknowledged": "1"}, "acknowledged"),
        ({"rule": "abc"}, "rule"),
        ({"rule": "0"}, "rule"),
    ],
)
def test_bad_event_filters_are_400s_naming_them(as_alice, query, field):
    response = as_alice.get(f"{API}/events", query)
    assert response.status_code == 400
    assert set(response.json()) == {field}


def test_acknowledge_is_idempotent_and_answers_the_event(as_alice, alice):
    event = make_event(make_rule(alice), T0)
    for _ in range(2):
        response = as_alice.post(f"{API}/events/{event.pk}/acknowledge/")
        assert response.status_code == 200
        assert response.json()["id"] == event.pk
        assert response.json()["acknowledged"] is True
    event.refresh_from_db()
    assert event.acknowledged is True


def test_acknowledge_many(as_alice, alice):
    rule = make_rule(alice)
    events = [make_event(rule, T0 + timedelta(seconds=i)) for i in range(3)]
    response = as_alice.post(f"{API}/events/acknowledge", {"ids": [events[0].pk, events[1].pk]})
    assert response.json() == {"acknowledged": 2}
    again = as_alice.post(f"{API}/events/acknowledge", {"ids": [e.pk for e in events]})
    assert again.json() == {"acknowledged": 1}
    assert AlertEvent.objects.filter(acknowledged=True).count() == 3
    assert as_alice.post(f"{API}/events/acknowledge", {"ids": []}).status_code == 400
    bad_item = as_alice.post(f"{API}/events/acknowledge", {"ids": [events[0].pk, 0, "x"]})
    assert bad_item.status_code == 400
    assert set(bad_item.json()["ids"]) == {"1", "2"}  # the indexes of the bad items
    assert set(as_alice.post(f"{API}/events/acknowledge", {}).json()) == {"ids"}


# Audit: every change through the API leaves a record.


def test_api_changes_are_audited(as_alice, alice):
    rule_id = as_alice.post(f"{API}/rules", VALID).json()["id"]
    as_alice.patch(f"{API}/rules/{rule_id}", {"threshold": 250})
    as_alice.patch(f"{API}/rules/{rule_id}", {"threshold": 250})  # no change: no record
    as_alice.delete(f"{API}/rules/{rule_id}")
    audits = api_audits(object_id=rule_id)
    assert [a.action for a in audits] == [AuditEntry.Action.CREATE, AuditEntry.Action.UPDATE,
                                          AuditEntry.Action.DELETE]  # fmt: skip
    assert {a.actor for a in audits} == {alice}
    assert audits[0].changes["symbol"] == [None, "AAPL"]
    assert audits[1].changes == {"threshold": [200.0, 250.0]}
    assert audits[2].changes["threshold"] == [250.0, None]


# The browsable API.


def test_the_browsable_api_renders_your_rules_and_events(as_alice, alice):
    rule = make_rule(alice)
    event = make_event(rule, T0, message="AAPL crossed 200")
    for path in ["rules", f"rules/{rule.pk}", "events", f"events/{event.pk}"]:
        response = as_alice.get(f"{API}/{path}", headers={"accept": "text/html"})
        assert response.status_code == 200, path
        assert response["Content-Type"].startswith("text/html")
        assert "AAPL" in response.content.decode(), path
    events = as_alice.get(f"{API}/events", headers={"accept": "text/html"}).content.decode()
    assert "AAPL crossed 200" in events
