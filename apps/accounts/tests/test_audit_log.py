"""The audit log: a change through each door leaves one entry naming who, from where, through
which door, and what changed (before and after). Also: the alert audit's history survives its
move into the log, retention, and a read-only, filterable admin."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from auditlog.models import LogEntry
from auditlog.render import render_logentry_changes_html
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Max
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import audit
from apps.accounts.models import ApiToken
from apps.accounts.tasks import audit_prune
from apps.alerts.models import AlertRule
from apps.market.models import Symbol
from apps.testing.factories import AlertRuleFactory
from marketflux_site.celery import app, beat_schedule

pytestmark = pytest.mark.usefixtures("market")

CREATE, UPDATE, DELETE = LogEntry.Action.CREATE, LogEntry.Action.UPDATE, LogEntry.Action.DELETE
CLIENT_IP = "203.0.113.7"
LOGS = "/admin/auditlog/logentry/"


@contextmanager
def recorded() -> Iterator[list[LogEntry]]:
    """The entries written inside the block, oldest first."""
    last = LogEntry.objects.aggregate(last=Max("id"))["last"] or 0
    found: list[LogEntry] = []
    yield found
    found.extend(LogEntry.objects.filter(pk__gt=last).order_by("id"))


def who(entry: LogEntry) -> tuple:
    """(actor, door, address) of an entry."""
    return entry.actor, entry.additional_data["door"], entry.remote_addr


def as_posted(form: forms.BaseForm) -> dict:
    """What a browser posts back from `form` unchanged: each field as its widget renders it."""
    data = {}
    for bound in form:
        if bound.field.disabled:
            continue
        widget = bound.field.widget
        widget = getattr(widget, "widget", widget)  # the admin's wrapper with add/change links
        if isinstance(widget, forms.CheckboxInput):
            if bound.value():
                data[bound.html_name] = "on"
            continue
        rendered = widget.get_context(bound.html_name, bound.value(), {})["widget"]
        for part in rendered.get("subwidgets", [rendered]):
            if part["value"] is not None:
                data[part["name"]] = part["value"]
    return data


def change_form(client: Client, url: str) -> dict:
    """The admin change page at `url` as it would be posted back unchanged, inlines too."""
    page = client.get(url)
    assert page.status_code == 200
    data = as_posted(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        data |= as_posted(inline.formset.management_form)
        for form in inline.formset.forms:
            data |= as_posted(form)
    return data


@pytest.fixture
def superuser(db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    return user


@pytest.fixture
def admin_site(superuser) -> Client:
    client = Client(REMOTE_ADDR=CLIENT_IP)
    client.force_login(superuser)
    return client


# --- Each door -----------------------------------------------------------------------------


def test_a_symbol_changed_in_the_admin(admin_site, superuser):
    url = "/admin/market/symbol/AAPL/change/"
    data = change_form(admin_site, url)
    with recorded() as entries:
        response = admin_site.post(url, {**data, "volatility": "0.3"})
    assert response.status_code == 302, response.context and response.context["errors"]
    (entry,) = entries
    assert (entry.content_type.model, entry.object_pk, entry.action) == ("symbol", "AAPL", UPDATE)
    assert who(entry) == (superuser, "admin", CLIENT_IP)
    assert entry.changes == {"volatility": [0.25, 0.3]}
    assert entry.cid == response["X-Request-ID"]  # the request's log lines carry it too


def test_symbols_deactivated_by_the_admin_action_each_leave_an_entry(admin_site, superuser):
    with recorded() as entries:
        response = admin_site.post(
            "/admin/market/symbol/",
            {"action": "deactivate", "_selected_action": ["AAPL", "MSFT"]},
        )
    assert response.status_code == 302
    assert sorted((e.object_pk, e.action) for e in entries) == [("AAPL", UPDATE), ("MSFT", UPDATE)]
    for entry in entries:
        assert who(entry) == (superuser, "admin", CLIENT_IP)
        assert entry.changes["active"] == [True, False]


def test_a_user_changed_in_the_admin_and_their_password(admin_site, superuser):
    joined = timezone.now().replace(microsecond=0)  # what the form's time shows, to the second
    dora = get_user_model().objects.create_user(
        "dora", "dora@example.com", "Quiet-Harbour-2931", date_joined=joined
    )
    url = f"/admin/auth/user/{dora.pk}/change/"
    data = change_form(admin_site, url)
    with recorded() as entries:
        response = admin_site.post(url, {**data, "email": "dora@example.org"})
    assert response.status_code == 302, response.context and response.context["errors"]
    (entry,) = entries
    assert (entry.object_id, entry.action) == (dora.pk, UPDATE)
    assert who(entry) == (superuser, "admin", CLIENT_IP)
    assert entry.changes == {"email": ["dora@example.com", "dora@example.org"]}

    old_hash = get_user_model().objects.get(pk=dora.pk).password
    new = "Lantern-Orchard-7714"
    with recorded() as entries:
        response = admin_site.post(
            f"/admin/auth/user/{dora.pk}/password/",
            {"password1": new, "password2": new, "usable_password": "true"},
        )
    assert response.status_code == 302, response.context and response.context["errors"]
    (entry,) = entries
    new_hash = get_user_model().objects.get(pk=dora.pk).password
    assert new_hash != old_hash
    # That the password changed is recorded; nothing of it, its hash or half of it.
    assert entry.changes == {"password": [audit.HIDDEN, audit.HIDDEN]}
    stored = json.dumps([entry.changes, entry.additional_data, entry.serialized_data])
    assert old_hash[-8:] not in stored
    assert new_hash[-8:] not in stored


def test_a_groups_permissions_changed_in_the_admin(admin_site, superuser):
    desk = Group.objects.create(name="desk")
    perm = Permission.objects.get(codename="change_symbol")
    url = f"/admin/auth/group/{desk.pk}/change/"
    data = change_form(admin_site, url)
    with recorded() as entries:
        response = admin_site.post(url, {**data, "permissions": [perm.pk]})
    assert response.status_code == 302, response.context and response.context["errors"]
    (entry,) = entries
    assert (entry.object_id, entry.action) == (desk.pk, UPDATE)
    assert who(entry) == (superuser, "admin", CLIENT_IP)
    assert entry.changes == {
        "permissions": {"type": "m2m", "operation": "add", "objects": [str(perm)]}
    }


def test_an_alert_rule_created_and_changed_through_the_api(alice, redis_client):
    api = APIClient(REMOTE_ADDR=CLIENT_IP)
    api.force_login(alice)  # a session, as the browsable API and the pages use
    with recorded() as entries:
        response = api.post("/api/v1/alerts/rules", {"symbol": "AAPL", "condition": "price_above",
                                                     "threshold": 200})  # fmt: skip
    assert response.status_code == 201, response.content
    rule_id = response.json()["id"]
    (created,) = entries
    assert (created.object_id, created.action) == (rule_id, CREATE)
    assert who(created) == (alice, "api", CLIENT_IP)
    assert created.changes["symbol"] == [None, "AAPL"]
    assert created.changes["threshold"] == [None, 200.0]
    assert created.changes["owner"] == [None, alice.pk]

    with recorded() as entries:
        response = api.patch(f"/api/v1/alerts/rules/{rule_id}", {"threshold": 250})
    assert response.status_code == 200, response.content
    (changed,) = entries
    assert (changed.object_id, changed.action) == (rule_id, UPDATE)
    assert who(changed) == (alice, "api", CLIENT_IP)
    assert changed.changes == {"threshold": [200.0, 250.0]}


def test_an_alert_rule_disabled_on_the_alerts_page(alice, redis_client):
    rule = AlertRuleFactory(owner=alice)
    page = Client(REMOTE_ADDR=CLIENT_IP)
    page.force_login(alice)
    with recorded() as entries:
        response = page.post(f"/alerts/rules/{rule.pk}/active", {"active": "false"})
    assert response.status_code == 302
    (entry,) = entries
    assert (entry.object_id, entry.action) == (rule.pk, UPDATE)
    assert who(entry) == (alice, "web", CLIENT_IP)
    assert entry.changes == {"active": [True, False]}


def test_symbols_created_by_a_command(db):
    with recorded() as entries:
        call_command("seed_symbols", "ZZZ", stdout=io.StringIO())
    (entry,) = entries
    assert (entry.object_pk, entry.action) == ("ZZZ", CREATE)
    assert who(entry) == (None, "command", None)
    assert entry.additional_data["command"] == "seed_symbols"
    assert entry.changes["ticker"] == [None, "ZZZ"]
    assert entry.changes["start_price"][0] is None
    assert "updated_at" not in entry.changes


def test_a_superuser_created_by_a_command_with_the_password_hidden(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Copper-Meadow-5820")
    with recorded() as entries:
        call_command("createsuperuser", interactive=False, username="erin",
                     email="erin@example.com", stdout=io.StringIO())  # fmt: skip
    (entry,) = entries
    erin = get_user_model().objects.get(username="erin")
    assert (entry.object_id, entry.action) == (erin.pk, CREATE)
    assert who(entry) == (None, "command", None)
    assert entry.additional_data["command"] == "createsuperuser"
    assert entry.changes["is_superuser"] == [None, True]
    assert entry.changes["password"] == [audit.HIDDEN, audit.HIDDEN]
    assert erin.password[-8:] not in json.dumps(entry.changes)


def test_a_symbol_changed_in_a_shell(db):
    code = "s = Symbol.objects.get(ticker='MSFT'); s.sector = 'Software'; s.save()"
    with recorded() as entries:
        call_command("shell", command=f"from apps.market.models import Symbol; {code}")
    (entry,) = entries
    assert (entry.object_pk, entry.action) == ("MSFT", UPDATE)
    assert who(entry) == (None, "shell", None)
    assert entry.changes == {"sector": ["Technology", "Software"]}


@app.task(name="accounts.tests.rename_symbol")
def rename_symbol(ticker: str, name: str) -> None:
    symbol = Symbol.objects.get(ticker=ticker)
    symbol.name = name
    symbol.save()


def test_a_symbol_changed_by_a_celery_task(db):
    before = Symbol.objects.get(ticker="TSLA").name
    with recorded() as entries:
        rename_symbol.apply(args=("TSLA", "Tesla, renamed")).get()
    (entry,) = entries
    assert (entry.object_pk, entry.action) == ("TSLA", UPDATE)
    assert who(entry) == (None, "pipeline", None)
    assert entry.additional_data["task"] == "accounts.tests.rename_symbol"
    assert entry.changes == {"name": [before, "Tesla, renamed"]}


def test_api_tokens_are_audited_without_their_digest(alice):
    with recorded() as entries:
        token = ApiToken.objects.create(
            user=alice, name="ci", prefix="mfx_ab12", digest="d" * 64, scopes=["read"]
        )
        token.revoked = timezone.now()
        token.save()
    created, revoked = entries
    assert created.action == CREATE
    assert created.changes["scopes"] == [None, ["read"]]
    assert created.changes["name"] == [None, "ci"]
    assert "digest" not in created.changes
    assert "d" * 64 not in json.dumps(created.changes)
    assert revoked.action == UPDATE
    assert list(revoked.changes) == ["revoked"]


def test_the_client_address_comes_through_the_declared_proxies_only(admin_site, settings):
    """A client may send any X-Forwarded-For; only what our own proxies added is believed."""
    url = "/admin/market/symbol/MSFT/change/"
    data = change_form(admin_site, url)
    forged = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.4"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    with recorded() as entries:
        admin_site.post(url, {**data, "drift": "0.06"}, **forged)
    assert entries[0].remote_addr == "10.0.0.2"  # no proxy declared: the peer's address

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    with recorded() as entries:
        admin_site.post(url, {**data, "drift": "0.07"}, **forged)
    assert entries[0].remote_addr == "198.51.100.4"  # what our proxy saw, not the forged one


# --- The alert audit's history, moved into the log ------------------------------------------


ALERTS_BEFORE = [("alerts", "0001_initial")]
AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_alert_audit_history():
    executor = MigrationExecutor(connection)
    executor.migrate(ALERTS_BEFORE)
    old = executor.loader.project_state(ALERTS_BEFORE).apps
    Audit = old.get_model("alerts", "AlertRuleAudit")
    owner = old.get_model("auth", "User").objects.create(username="fay", email="fay@example.com")
    rule = old.get_model("alerts", "AlertRule").objects.create(
        owner_id=owner.pk, condition="price_above", threshold=250.0
    )
    rows = [
        (rule.pk, owner.pk, "web", "create", {"owner_id": [None, owner.pk],
                                              "condition": [None, "price_above"],
                                              "threshold": [None, 200.0]}),
        (rule.pk, owner.pk, "api", "update", {"threshold": [200.0, 250.0],
                                              "expires_at": [None, "2026-12-24T15:00:00+00:00"]}),
        (999, None, "admin", "delete", {"symbol_id": ["MSFT", None], "threshold": [70, None],
                                        "condition": ["rsi_above", None]}),
    ]  # fmt: skip
    for minutes, (rule_id, actor_id, source, action, changes) in enumerate(rows):
        made = Audit.objects.create(
            rule_id=rule_id, actor_id=actor_id, source=source, action=action, changes=changes
        )
        Audit.objects.filter(pk=made.pk).update(at=AT + timedelta(minutes=minutes))

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    copied = LogEntry.objects.filter(additional_data__has_key="alert_rule_audit").order_by("id")
    rule_type = ContentType.objects.get_for_model(AlertRule)
    assert [
        (e.content_type_id, e.object_pk, e.object_id, e.action, e.actor_id, e.timestamp,
         e.additional_data["door"], e.changes, e.object_repr)
        for e in copied
    ] == [
        (rule_type.pk, str(rule.pk), rule.pk, CREATE, owner.pk, AT, "web",
         {"owner": [None, owner.pk], "condition": [None, "price_above"],
          "threshold": [None, 200.0]}, f"#{rule.pk} * price_above 200"),
        (rule_type.pk, str(rule.pk), rule.pk, UPDATE, owner.pk, AT + timedelta(minutes=1), "api",
         {"threshold": [200.0, 250.0], "expires_at": [None, "2026-12-24 15:00:00"]},
         f"#{rule.pk} * price_above 250"),
        (rule_type.pk, "999", 999, DELETE, None, AT + timedelta(minutes=2), "admin",
         {"symbol": ["MSFT", None], "threshold": [70, None], "condition": ["rsi_above", None]},
         "#999 MSFT rsi_above 70"),
    ]  # fmt: skip
    assert copied[0].actor_email == "fay@example.com"
    # The old table is gone; the copied history reads as auditlog's own (the admin renders it).
    assert "alerts_alertruleaudit" not in connection.introspection.table_names()
    shown = render_logentry_changes_html(copied[1])
    assert "250.0" in shown
    assert "2026-12-24 15:00:00" in shown


# --- Retention -----------------------------------------------------------------------------


def age(entry: LogEntry, days: int) -> None:
    LogEntry.objects.filter(pk=entry.pk).update(timestamp=timezone.now() - timedelta(days=days))


def test_retention_deletes_older_entries_and_keeps_newer_ones(settings, alice):
    rules = [AlertRuleFactory(owner=alice, threshold=t) for t in (201.0, 202.0, 203.0)]
    old, edge, new = (audit.entries_for("alerts.AlertRule").get(object_id=r.pk) for r in rules)
    age(old, 31)
    age(edge, 29)
    settings.MARKETFLUX_AUDIT_RETENTION_DAYS = 30
    call_command("audit_prune", stdout=io.StringIO())
    kept = set(LogEntry.objects.values_list("pk", flat=True))
    assert old.pk not in kept
    assert {edge.pk, new.pk} <= kept

    age(edge, 400)
    settings.MARKETFLUX_AUDIT_RETENTION_DAYS = 0  # keep everything
    assert audit_prune.apply().get() == 0
    assert LogEntry.objects.filter(pk=edge.pk).exists()
    settings.MARKETFLUX_AUDIT_RETENTION_DAYS = 365
    assert audit_prune.apply().get() == 1  # what beat runs daily
    assert not LogEntry.objects.filter(pk=edge.pk).exists()


def test_beat_prunes_the_audit_log_daily():
    (entry,) = [e for e in beat_schedule(tick_interval=0.5, shards=1).values()
                if e["task"] == "accounts.audit_prune"]  # fmt: skip
    assert entry["schedule"] == timedelta(days=1)
    assert "accounts.audit_prune" in app.tasks


# --- The admin -----------------------------------------------------------------------------


@pytest.fixture
def auditor(db) -> Client:
    """Staff allowed only to read the audit log."""
    user = get_user_model().objects.create_user("gus", is_staff=True)
    read_log = Permission.objects.get(codename="view_logentry", content_type__app_label="auditlog")
    user.user_permissions.set([read_log])
    client = Client()
    client.force_login(user)
    return client


def listed(client: Client, **filters) -> list[LogEntry]:
    response = client.get(LOGS, filters)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_the_admin_list_is_read_only(auditor, alice):
    entry = audit.entries_for("auth.User").get(object_id=alice.pk, action=CREATE)
    page = auditor.get(LOGS)
    assert page.status_code == 200
    assert page.context["has_add_permission"] is False
    assert not page.context["cl"].model_admin.get_actions(page.wsgi_request)  # no bulk delete
    assert auditor.get(f"{LOGS}add/").status_code == 403
    assert auditor.post(f"{LOGS}{entry.pk}/change/", {"action": "2"}).status_code == 403
    assert auditor.post(f"{LOGS}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LogEntry.objects.get(pk=entry.pk).action == CREATE
    detail = auditor.get(f"{LOGS}{entry.pk}/change/")
    assert detail.status_code == 200  # readable, with nothing to save
    assert b'name="_save"' not in detail.content


def test_staff_without_the_permission_do_not_see_it(alice):
    staff = get_user_model().objects.create_user("hal", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(LOGS).status_code == 403


def test_the_admin_filters_by_model_action_actor_door_and_date(auditor, admin_site, superuser):
    data = change_form(admin_site, "/admin/market/symbol/TSLA/change/")
    admin_site.post("/admin/market/symbol/TSLA/change/", {**data, "jump_rate": "10"})
    (by_admin,) = LogEntry.objects.filter(additional_data__door="admin")
    seeded = LogEntry.objects.filter(content_type__model="symbol", action=CREATE)
    age(seeded.get(object_pk="AMZN"), 40)

    symbol_type = ContentType.objects.get_for_model(Symbol)
    assert set(listed(auditor, resource_type=symbol_type.pk)) == {by_admin, *seeded}
    updates = listed(auditor, action=UPDATE)
    assert by_admin in updates
    assert {e.action for e in updates} == {UPDATE}
    assert not set(seeded) & set(updates)
    assert listed(auditor, actor__id__exact=superuser.pk) == [by_admin]
    assert listed(auditor, door="admin") == [by_admin]
    assert by_admin not in listed(auditor, door="shell")
    now = timezone.now()
    recent = listed(auditor, resource_type=symbol_type.pk,
                    timestamp__gte=str(now - timedelta(days=7)),
                    timestamp__lt=str(now + timedelta(days=1)))  # fmt: skip
    assert {e.object_pk for e in recent} == {"AAPL", "GOOGL", "MSFT", "TSLA"}
    page = auditor.get(LOGS).content.decode()
    for title in ("By Resource Type", "By action", "By actor", "By door", "By timestamp"):
        assert title.lower() in page.lower(), title
