"""Every rule change leaves an entry in the audit log: who, when, through what, what changed."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from auditlog.models import LogEntry as AuditEntry
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.audit import entries_for
from apps.alerts import services
from apps.alerts.models import AlertEvent, AlertRule
from apps.testing.factories import AlertEventFactory, AlertRuleFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("market", "fresh_state")]

ACTIONS = {AuditEntry.Action.CREATE: "create", AuditEntry.Action.UPDATE: "update",
           AuditEntry.Action.DELETE: "delete"}  # fmt: skip


def rule_entries():
    return entries_for("alerts.AlertRule")


def described(entry: AuditEntry) -> tuple:
    """(rule id, action, actor, door) of an entry."""
    return (entry.object_id, ACTIONS[entry.action], entry.actor,
            entry.additional_data["door"])  # fmt: skip


def test_create_records_every_field(alice):
    before = timezone.now()
    rule = AlertRule(owner=alice, symbol_id="AAPL", condition="rsi_above", threshold=70)
    audit = services.rule_save(rule, actor=alice, source="shell")
    assert audit == rule_entries().get()
    assert described(audit) == (rule.pk, "create", alice, "shell")
    assert before <= audit.timestamp <= timezone.now()
    assert audit.changes["condition"] == [None, "rsi_above"]
    assert audit.changes["threshold"] == [None, 70]
    assert audit.changes["symbol"] == [None, "AAPL"]
    assert "window_seconds" not in audit.changes  # None before and after
    assert "last_fired_at" not in audit.changes  # the pipeline's, not a change anyone made


def test_update_records_only_what_changed_and_nothing_when_nothing_did(alice):
    rule = AlertRuleFactory(owner=alice)
    expiry = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    rule.threshold, rule.expires_at = 250.0, expiry
    audit = services.rule_save(rule, actor=alice, source="api")
    assert ACTIONS[audit.action] == "update"
    # Times as auditlog writes them: UTC, without the zone.
    when = expiry.astimezone(UTC).replace(tzinfo=None)
    assert audit.changes == {"threshold": [200.0, 250.0], "expires_at": [None, str(when)]}
    assert services.rule_save(rule, actor=alice, source="api") is None
    assert rule_entries().filter(action=AuditEntry.Action.UPDATE).count() == 1


def test_an_invalid_change_is_neither_stored_nor_audited(alice):
    rule = AlertRuleFactory(owner=alice)
    rule.threshold = -1
    with pytest.raises(ValidationError) as raised:
        services.rule_save(rule, actor=alice, source="api")
    assert set(raised.value.message_dict) == {"threshold"}
    assert AlertRule.objects.get().threshold == 200.0
    assert not rule_entries().filter(action=AuditEntry.Action.UPDATE).exists()


def test_enable_disable_audits_each_rule_that_changed(alice):
    on = AlertRuleFactory(owner=alice)
    off = AlertRuleFactory(owner=alice, symbol_id="MSFT", active=False)
    seen = []
    changed = services.rules_set_active(
        AlertRule.objects.all(), active=False, actor=alice, source="web", on_change=seen.append
    )
    assert changed == 1
    assert seen == [on]
    audit = rule_entries().get(action=AuditEntry.Action.UPDATE)
    assert (audit.object_id, audit.changes) == (on.pk, {"active": [True, False]})
    assert described(audit)[2:] == (alice, "web")
    off.refresh_from_db()
    assert off.active is False


def test_delete_keeps_what_the_rule_was_after_it_and_its_user_are_gone(alice):
    rule = AlertRuleFactory(owner=alice, message="gone")
    AlertEventFactory(rule=rule, ts=timezone.now())
    pk = rule.pk
    services.rule_delete(rule, actor=alice, source="admin")
    assert not AlertRule.objects.exists()
    assert not AlertEvent.objects.exists()
    alice.delete()
    audit = rule_entries().get(action=AuditEntry.Action.DELETE)
    assert described(audit) == (pk, "delete", None, "admin")
    assert audit.changes["message"] == ["gone", None]
    assert audit.changes["owner"][0] is not None


def test_each_door_records_its_source_and_actor(alice, admin_user):
    """The API, the admin and the alerts page each leave an audit entry naming themselves."""
    api = APIClient()
    api.force_authenticate(alice)
    api_rule = api.post("/api/v1/alerts/rules", {"symbol": "AAPL", "condition": "anomaly"})
    assert api_rule.status_code == 201

    web = Client()
    web.force_login(alice)
    assert web.post("/alerts/", {"symbol": "*", "condition": "anomaly", "frequency": "once_per_bar",
                                 "cooldown_seconds": 0}).status_code == 302  # fmt: skip

    admin = Client()
    admin.force_login(admin_user)
    api_pk = api_rule.json()["id"]
    response = admin.post("/admin/alerts/alertrule/", {"action": "disable",
                                                       "_selected_action": [api_pk]})  # fmt: skip
    assert response.status_code == 302

    rows = [(a.object_id, ACTIONS[a.action], a.actor.username, a.additional_data["door"])
            for a in rule_entries()]  # fmt: skip
    web_pk = AlertRule.objects.exclude(pk=api_pk).get().pk
    assert rows == [
        (api_pk, "create", "alice", "api"),
        (web_pk, "create", "alice", "web"),
        (api_pk, "update", "admin", "admin"),
    ]
    # Only the admin's change is in Django's admin log (the audit log has every door's).
    assert [e.object_id for e in LogEntry.objects.all()] == [str(api_pk)]
