"""The alerts admin as staff use it: every user's rules, actions, events, their audit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from auditlog.models import LogEntry as AuditEntry
from channels.testing import WebsocketCommunicator
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.accounts import roles
from apps.accounts.audit import entries_for
from apps.alerts.models import AlertEvent, AlertRule
from apps.ingest.pipeline import TickBatch, ingest
from apps.testing.factories import AlertEventFactory, AlertRuleFactory, UserFactory
from marketflux_site.asgi import application

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("market", "fresh_state")]

RULES = "/admin/alerts/alertrule/"
EVENTS = "/admin/alerts/alertevent/"
AUDITS = "/admin/auditlog/logentry/"
CREATED, UPDATED, DELETED = (AuditEntry.Action.CREATE, AuditEntry.Action.UPDATE,
                             AuditEntry.Action.DELETE)  # fmt: skip


def rule_audits(**filters) -> list[AuditEntry]:
    """The audit log's entries about alert rules (oldest first)."""
    return list(entries_for("alerts.AlertRule").filter(**filters))


def door(entry: AuditEntry) -> str:
    return entry.additional_data["door"]


@pytest.fixture
def staff(market):
    """A staff user (not a superuser) with every permission on the alerts models."""
    user = get_user_model().objects.create_user("carol", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["alerts", "market"])
    )
    return user


@pytest.fixture
def admin_user_(admin_user, market):
    return admin_user


def feed_prices(prices: dict[str, float]) -> datetime:
    """One tick per symbol through the real pipeline, so the hot state holds these prices."""
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    ingest(TickBatch.from_rows([(t, ts, p, 100) for t, p in prices.items()]))
    return ts


def logs_of(obj, flag: int) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(
            content_type__model=obj._meta.model_name, object_id=str(obj.pk), action_flag=flag
        )
    )


def form_data(rule: AlertRule | None = None, **changes) -> dict:
    data = {
        "owner": "", "symbol": "", "active": "on", "condition": "price_above",
        "threshold": "200", "window_seconds": "", "frequency": "once_per_bar",
        "cooldown_seconds": "0", "expires_at_0": "", "expires_at_1": "", "message": "",
    }  # fmt: skip
    if rule is not None:
        data.update(
            owner=rule.owner_id, symbol=rule.symbol_id or "", condition=rule.condition,
            threshold="" if rule.threshold is None else rule.threshold,
            frequency=rule.frequency, cooldown_seconds=rule.cooldown_seconds,
            message=rule.message,
        )  # fmt: skip
        if not rule.active:
            del data["active"]
    data.update(changes)
    return data


# The rules changelist.


def test_changelist_shows_every_users_rules(client, staff, alice, bob):
    AlertRuleFactory(owner=alice, symbol_id="AAPL", message="alice watches apple")
    AlertRuleFactory(owner=bob, symbol_id=None, condition="anomaly", threshold=None)
    client.force_login(staff)
    response = client.get(RULES)
    assert response.status_code == 200
    rows = {(r.owner.username, r.symbol_id) for r in response.context["cl"].result_list}
    assert rows == {("alice", "AAPL"), ("bob", None)}
    body = response.content.decode()
    symbols = re.findall(r'class="field-symbol_or_all"><a href="[^"]+">([^<]+)</a>', body)
    assert sorted(symbols) == ["*", "AAPL"]
    for column in ["owner", "condition", "threshold", "frequency", "active", "last_fired_at"]:
        assert f"column-{column}" in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"condition__exact": "anomaly"}, {"bob-*"}),
        ({"frequency__exact": "every_time"}, {"alice-TSLA"}),
        ({"active__exact": "0"}, {"alice-TSLA"}),
        ({"symbol__ticker__exact": "AAPL"}, {"alice-AAPL"}),
        ({"symbol__isnull": "True"}, {"bob-*"}),
        ({"q": "bob"}, {"bob-*"}),
        ({"q": "tsla"}, {"alice-TSLA"}),
        ({"q": "apple"}, {"alice-AAPL"}),
    ],
)
def test_changelist_filters_and_search(admin_client, alice, bob, query, expected):
    AlertRuleFactory(owner=alice, symbol_id="AAPL", message="alice watches apple")
    AlertRuleFactory(owner=alice, symbol_id="TSLA", frequency="every_time", active=False)
    AlertRuleFactory(owner=bob, symbol_id=None, condition="anomaly", threshold=None)
    response = admin_client.get(RULES, query)
    assert response.status_code == 200
    found = {f"{r.owner.username}-{r.symbol_id or '*'}" for r in response.context["cl"].result_list}
    assert found == expected


def test_owner_filter(admin_client, alice, bob):
    AlertRuleFactory(owner=alice)
    AlertRuleFactory(owner=bob)
    response = admin_client.get(RULES, {"owner__id__exact": bob.pk})
    assert [r.owner for r in response.context["cl"].result_list] == [bob]


# Saving through the admin: audited and logged.


def test_add_is_audited_and_logged(admin_client, admin_user_, alice):
    response = admin_client.post(f"{RULES}add/", form_data(owner=alice.pk, symbol="MSFT"))
    assert response.status_code == 302, response.context and response.context["errors"]
    rule = AlertRule.objects.get()
    assert (rule.owner, rule.symbol_id, rule.threshold) == (alice, "MSFT", 200.0)
    (audit,) = rule_audits()
    assert (audit.object_id, audit.action, audit.actor, door(audit)) == (
        rule.pk, CREATED, admin_user_, "admin"
    )  # fmt: skip
    assert audit.changes["owner"] == [None, alice.pk]
    assert len(logs_of(rule, ADDITION)) == 1


def test_change_is_audited_with_what_changed_and_logged(admin_client, admin_user_, alice):
    rule = AlertRuleFactory(owner=alice)
    response = admin_client.post(f"{RULES}{rule.pk}/change/", form_data(rule, threshold="250"))
    assert response.status_code == 302
    (audit,) = rule_audits(action=UPDATED)
    assert (audit.actor, door(audit)) == (admin_user_, "admin")
    assert audit.changes == {"threshold": [200.0, 250.0]}
    (entry,) = logs_of(rule, CHANGE)
    assert "Threshold" in entry.get_change_message()


def test_add_and_change_pages_render(admin_client, alice):
    rule = AlertRuleFactory(owner=alice, symbol_id="AAPL")
    assert admin_client.get(f"{RULES}add/").status_code == 200
    page = admin_client.get(f"{RULES}{rule.pk}/change/")
    assert page.status_code == 200
    assert page.context["adminform"].form.initial["threshold"] == 200.0
    assert admin_client.get(f"{RULES}{rule.pk}/history/").status_code == 200


def test_invalid_rules_are_refused_with_the_field_named(admin_client, alice):
    response = admin_client.post(
        f"{RULES}add/", form_data(owner=alice.pk, condition="rsi_above", threshold="150")
    )
    assert response.status_code == 200
    assert "an RSI level is between 0 and 100" in response.content.decode()
    assert response.context["adminform"].form.errors.keys() == {"threshold"}
    assert not AlertRule.objects.exists()
    assert not rule_audits()


def test_delete_is_audited_and_logged(admin_client, admin_user_, alice):
    rule = AlertRuleFactory(owner=alice)
    pk = rule.pk
    response = admin_client.post(f"{RULES}{pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AlertRule.objects.exists()
    (audit,) = rule_audits(action=DELETED)
    assert (audit.object_id, audit.actor, door(audit)) == (pk, admin_user_, "admin")
    assert audit.changes["threshold"] == [200.0, None]
    assert LogEntry.objects.filter(object_id=str(pk), action_flag=DELETION).count() == 1


def test_delete_selected_audits_each_rule(admin_client, alice, bob):
    rules = [
        AlertRuleFactory(owner=alice),
        AlertRuleFactory(owner=bob),
        AlertRuleFactory(owner=bob, symbol_id="TSLA"),
    ]
    response = admin_client.post(
        RULES,
        {"action": "delete_selected", "_selected_action": [r.pk for r in rules[:2]],
         "post": "yes"},
    )  # fmt: skip
    assert response.status_code == 302
    assert list(AlertRule.objects.all()) == [rules[2]]
    audited = [a.object_id for a in rule_audits(action=DELETED)]
    assert sorted(audited) == sorted([rules[0].pk, rules[1].pk])
    logged = set(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True))
    assert logged == {str(rules[0].pk), str(rules[1].pk)}


# Actions.


@pytest.mark.parametrize(("action", "active"), [("disable", False), ("enable", True)])
def test_enable_and_disable_audit_and_log_each_changed_rule(
    admin_client, admin_user_, alice, action, active
):
    changes = [
        AlertRuleFactory(owner=alice, active=not active),
        AlertRuleFactory(owner=alice, symbol_id="MSFT", active=not active),
    ]
    already = AlertRuleFactory(owner=alice, symbol_id="TSLA", active=active)
    response = admin_client.post(
        RULES,
        {"action": action, "_selected_action": [r.pk for r in [*changes, already]]},
        follow=True,
    )
    assert response.status_code == 200
    assert "2 rule(s)" in response.content.decode()
    assert set(AlertRule.objects.filter(active=active)) == {*changes, already}
    audits = rule_audits(action=UPDATED)
    assert sorted(a.object_id for a in audits) == sorted(r.pk for r in changes)
    assert {(a.actor, door(a)) for a in audits} == {(admin_user_, "admin")}
    assert all(a.changes == {"active": [not active, active]} for a in audits)
    for rule in changes:
        assert len(logs_of(rule, CHANGE)) == 1
    assert logs_of(already, CHANGE) == []


def test_test_fire_creates_a_marked_event_at_the_latest_price(admin_client, alice):
    feed_prices({"AAPL": 201.25, "MSFT": 410.5})
    rule = AlertRuleFactory(owner=alice, symbol_id="AAPL", message="{symbol} at {price}")
    before = timezone.now()
    response = admin_client.post(
        RULES, {"action": "test_fire", "_selected_action": [rule.pk]}, follow=True
    )
    assert "Test-fired 1 rule(s)." in response.content.decode()
    event = AlertEvent.objects.get()
    assert (event.rule, event.owner, event.symbol, event.condition) == (
        rule, alice, "AAPL", "price_above"
    )  # fmt: skip
    assert event.price == 201.25
    assert event.value == 201.25
    assert event.message == "[test] AAPL at 201.25"
    assert before <= event.ts <= timezone.now()
    assert event.acknowledged is False
    rule.refresh_from_db()
    assert rule.last_fired_at is None  # a test does not count as a firing
    (entry,) = logs_of(rule, CHANGE)
    assert f"event #{event.pk}" in entry.get_change_message()
    assert not rule_audits(action=UPDATED)  # the rule itself did not change


def test_test_fire_of_an_all_symbols_rule_uses_a_priced_symbol(admin_client, alice):
    feed_prices({"MSFT": 410.5, "TSLA": 250.0})
    rule = AlertRuleFactory(owner=alice, symbol_id=None, condition="anomaly", threshold=None)
    admin_client.post(RULES, {"action": "test_fire", "_selected_action": [rule.pk]})
    event = AlertEvent.objects.get()
    assert (event.symbol, event.price) == ("MSFT", 410.5)
    assert event.message.startswith("[test] MSFT: Z-score anomaly")


def test_test_fire_without_a_price_says_so(admin_client, alice):
    rule = AlertRuleFactory(owner=alice, symbol_id="GOOGL")
    response = admin_client.post(
        RULES, {"action": "test_fire", "_selected_action": [rule.pk]}, follow=True
    )
    assert "No price yet to test-fire at" in response.content.decode()
    assert not AlertEvent.objects.exists()


def test_test_fire_shows_up_in_the_owners_api(admin_client, alice):
    feed_prices({"AAPL": 199.0})
    rule = AlertRuleFactory(owner=alice)
    admin_client.post(RULES, {"action": "test_fire", "_selected_action": [rule.pk]})
    admin_client.logout()
    admin_client.force_login(alice)
    (listed,) = admin_client.get("/api/v1/alerts/events").json()["results"]
    assert listed["rule"] == rule.pk
    assert listed["message"].startswith("[test] ")


# Events: read-only.


def test_events_changelist_filters_and_date_hierarchy(admin_client, alice):
    rule = AlertRuleFactory(owner=alice)
    recent = timezone.now() - timedelta(hours=1)
    old = AlertEventFactory(rule=rule, ts=datetime(2024, 6, 1, tzinfo=UTC), acknowledged=True)
    new = AlertEventFactory(rule=rule, ts=recent)
    other = AlertEventFactory(
        rule=AlertRuleFactory(
            owner=alice, symbol_id="TSLA", condition="price_below", threshold=100
        ),
        ts=recent - timedelta(minutes=1),
    )
    response = admin_client.get(EVENTS)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'class="toplinks"' in body  # the date hierarchy: years
    assert f"?ts__year={recent.year}" in body
    assert "?ts__year=2024" in body

    def found(**query) -> set:
        response = admin_client.get(EVENTS, query)
        assert response.status_code == 200
        return set(response.context["cl"].result_list)

    assert found() == {old, new, other}
    assert found(acknowledged__exact="1") == {old}
    assert found(acknowledged__exact="0") == {new, other}
    assert found(symbol="TSLA") == {other}
    assert found(condition__exact="price_below") == {other}
    assert found(ts__year="2024") == {old}
    since = f"{(timezone.now() - timedelta(days=7)).date().isoformat()} 00:00:00+00:00"
    assert found(ts__gte=since) == {new, other}
    assert found(q="alice") == {old, new, other}


def test_events_cannot_be_added_or_changed(admin_client, alice):
    event = AlertEventFactory(
        rule=AlertRuleFactory(owner=alice), ts=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert admin_client.get(f"{EVENTS}add/").status_code == 403
    page = admin_client.get(f"{EVENTS}{event.pk}/change/")
    assert page.status_code == 200  # viewable
    assert 'name="_save"' not in page.content.decode()
    response = admin_client.post(
        f"{EVENTS}{event.pk}/change/", {"message": "rewritten", "acknowledged": "on"}
    )
    assert response.status_code == 403
    event.refresh_from_db()
    assert (event.message, event.acknowledged) == ("fired", False)


def test_only_superusers_delete_events(client, admin_client, staff, alice):
    event = AlertEventFactory(
        rule=AlertRuleFactory(owner=alice), ts=datetime(2026, 12, 1, tzinfo=UTC)
    )
    client.force_login(staff)
    assert client.get(EVENTS).status_code == 200
    assert client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AlertEvent.objects.exists()
    assert admin_client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not AlertEvent.objects.exists()


# The audit log: read-only for everyone.


def test_audit_admin_lists_a_rules_entries_and_never_edits(admin_client, alice):
    admin_client.post(f"{RULES}add/", form_data(owner=alice.pk))
    (audit,) = rule_audits()
    rules_only = {"resource_type": audit.content_type_id}
    response = admin_client.get(AUDITS, rules_only)
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [audit]
    nobody = admin_client.get(AUDITS, {**rules_only, "q": "nobody"})
    assert list(nobody.context["cl"].result_list) == []
    assert admin_client.get(f"{AUDITS}add/").status_code == 403
    assert admin_client.post(f"{AUDITS}{audit.pk}/change/", {"action": "2"}).status_code == 403
    assert admin_client.post(f"{AUDITS}{audit.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.get(pk=audit.pk).action == CREATED


# The symbols admin: how many active rules watch each symbol, and the rules inline.


def test_symbols_changelist_counts_active_rules_without_a_query_per_row(admin_client, alice, bob):
    def changelist():
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get("/admin/market/symbol/")
        counts = {s.ticker: s.active_rule_count for s in response.context["cl"].result_list}
        return response, counts, len(queries)

    _, counts, few_queries = changelist()
    assert set(counts.values()) == {0}
    AlertRuleFactory(owner=alice, symbol_id="AAPL")
    AlertRuleFactory(owner=bob, symbol_id="AAPL")
    AlertRuleFactory(owner=bob, symbol_id="AAPL", active=False)
    AlertRuleFactory(owner=alice, symbol_id="TSLA")
    AlertRuleFactory(owner=alice, symbol_id=None)  # every symbol: not counted on any one
    response, counts, many_queries = changelist()
    assert counts == {"AAPL": 2, "AMZN": 0, "GOOGL": 0, "MSFT": 0, "TSLA": 1}
    assert many_queries == few_queries
    assert "column-active_rules" in response.content.decode()
    column = response.context["cl"].list_display.index("active_rules")  # 0: the checkbox
    ordered = admin_client.get("/admin/market/symbol/", {"o": f"-{column}"})
    tickers = [s.ticker for s in ordered.context["cl"].result_list]
    assert tickers[:2] == ["AAPL", "TSLA"]  # sortable by the count, most watched first


def inline_post_data(response) -> dict:
    """What the symbol change form would post back unchanged (fields and inline forms)."""
    data = {}
    form = response.context["adminform"].form
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for sub in formset.forms:
            for name, field in sub.fields.items():
                value = sub.initial.get(name, field.initial)
                if hasattr(value, "pk"):
                    value = value.pk
                if isinstance(value, bool):
                    if value:
                        data[f"{sub.prefix}-{name}"] = "on"
                elif value is not None:
                    data[f"{sub.prefix}-{name}"] = value
    return data


def test_symbol_page_shows_and_saves_its_rules_through_the_audit(
    admin_client, admin_user_, alice, bob
):
    mine = AlertRuleFactory(owner=alice, symbol_id="AAPL", threshold=210.0)
    AlertRuleFactory(owner=bob, symbol_id="AAPL", condition="rsi_below", threshold=30.0)
    AlertRuleFactory(owner=alice, symbol_id="TSLA")
    page = admin_client.get("/admin/market/symbol/AAPL/change/")
    assert page.status_code == 200
    (inline,) = page.context["inline_admin_formsets"]
    assert {f.instance.owner.username for f in inline.formset.forms} == {"alice", "bob"}
    assert all(f.instance.symbol_id == "AAPL" for f in inline.formset.forms)

    data = inline_post_data(page)
    index = next(i for i, f in enumerate(inline.formset.forms) if f.instance == mine)
    prefix = inline.formset.prefix
    data[f"{prefix}-{index}-threshold"] = "220"
    other = 1 - index
    data[f"{prefix}-{other}-DELETE"] = "on"
    response = admin_client.post("/admin/market/symbol/AAPL/change/", data)
    assert response.status_code == 302, response.context and response.context["errors"]

    mine.refresh_from_db()
    assert mine.threshold == 220.0
    assert list(AlertRule.objects.filter(symbol="AAPL")) == [mine]
    audits = {a.action: a for a in rule_audits(action__in=[UPDATED, DELETED])}
    assert set(audits) == {UPDATED, DELETED}
    assert audits[UPDATED].changes == {"threshold": [210.0, 220.0]}
    assert {door(a) for a in audits.values()} == {"admin"}
    assert {a.actor for a in audits.values()} == {admin_user_}
    assert len(logs_of(mine, CHANGE)) == 1


def test_deleting_a_symbol_audits_its_rules(admin_client, alice):
    rule = AlertRuleFactory(owner=alice, symbol_id="TSLA")
    response = admin_client.post("/admin/market/symbol/TSLA/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AlertRule.objects.exists()
    (audit,) = rule_audits(action=DELETED)
    assert (audit.object_id, door(audit)) == (rule.pk, "admin")


def test_anonymous_users_are_sent_to_the_login(client):
    for path in [RULES, EVENTS, AUDITS]:
        response = client.get(path)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


# Test-fire reaches the owner live, over the same WebSocket as the pipeline's alerts.


@pytest.mark.django_db(transaction=True)
async def test_test_fire_is_pushed_live_to_the_owner(market, redis_client):
    @sync_to_async
    def set_up() -> tuple[str, str, AlertRule, Client]:
        feed_prices({"AAPL": 201.25})  # before the rules exist: nothing fires for real
        alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
        for user in (alice, bob):  # the role whose sockets get alerts (docs/security.md)
            roles.user_role_set(user=user, role=roles.ANALYST)
        rule = AlertRuleFactory(owner=alice, symbol_id="AAPL", message="{symbol} at {price}")
        staff = Client()
        staff.force_login(get_user_model().objects.create_superuser("root"))
        keys = [Token.objects.create(user=u).key for u in (alice, bob)]
        return *keys, rule, staff

    alice_token, bob_token, rule, staff = await set_up()
    sockets = []
    for token in (alice_token, bob_token):
        socket = WebsocketCommunicator(application, f"/ws/market?token={token}")
        assert (await socket.connect(timeout=20))[0]
        sockets.append(socket)

    await sync_to_async(staff.post)(RULES, {"action": "test_fire", "_selected_action": [rule.pk]})
    event = await sync_to_async(AlertEvent.objects.get)()

    async def alerts(socket, *, wait: float) -> list[dict]:
        found: list[dict] = []
        while not await socket.receive_nothing(timeout=wait):
            found += [m for m in await socket.receive_json_from() if m["type"] == "alert"]
            if found:
                break
        return found

    owner, other = sockets
    (pushed,) = await alerts(owner, wait=10)
    assert pushed["id"] == event.pk
    assert pushed["rule"] == rule.pk
    assert pushed["message"] == "[test] AAPL at 201.25"
    assert await alerts(other, wait=1.5) == []
    for socket in sockets:
        await socket.disconnect()
    await sync_to_async(connections.close_all)()
