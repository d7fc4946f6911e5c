"""Every rule change leaves an AlertRuleAudit: who, when, through what, what changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.alerts import services
from apps.alerts.models import AlertEvent, AlertRule, AlertRuleAudit
from apps.testing.factories import AlertEventFactory, AlertRuleFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("market", "fresh_state")]


def test_create_records_every_field(alice):
    before = timezone.now()
    rule = AlertRule(owner=alice, symbol_id="AAPL", condition="rsi_above", threshold=70)
    audit = services.rule_save(rule, actor=alice, source="shell")
    assert audit == AlertRuleAudit.objects.get()
    assert (audit.rule_id, audit.action, audit.actor, audit.source) == (
        rule.pk, "create", alice, "shell"
    )  # fmt: skip
    assert before <= audit.at <= timezone.now()
    assert audit.changes["condition"] == [None, "rsi_above"]
    assert audit.changes["threshold"] == [None, 70]
    assert audit.changes["symbol_id"] == [None, "AAPL"]
    assert "window_seconds" not in audit.changes  # None before and after


def test_update_records_only_what_changed_and_nothing_when_nothing_did(alice):
    rule = AlertRuleFactory(owner=alice)
    expiry = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    rule.threshold, rule.expires_at = 250.0, expiry
    audit = services.rule_save(rule, actor=alice, source="api")
    assert audit.action == "update"
    assert audit.changes == {"threshold": [200.0, 250.0], "expires_at": [None, expiry.isoformat()]}
    assert services.rule_save(rule, actor=alice, source="api") is None
    assert AlertRuleAudit.objects.count() == 1


def test_an_invalid_change_is_neither_stored_nor_audited(alice):
    rule = AlertRuleFactory(owner=alice)
    rule.threshold = -1
    with pytest.raises(ValidationError) as raised:
        services.rule_save(rule, actor=alice, source="api")
    assert set(raised.value.message_dict) == {"threshold"}
    assert AlertRule.objects.get().threshold == 200.0
    assert not AlertRuleAudit.objects.exists()


def test_enable_disable_audits_each_rule_that_changed(alice):
    on = AlertRuleFactory(owner=alice)
    off = AlertRuleFactory(owner=alice, symbol_id="MSFT", active=False)
    seen = []
    changed = services.rules_set_active(
        AlertRule.objects.all(), active=False, actor=alice, source="web", on_change=seen.append
    )
    assert changed == 1
    assert seen == [on]
    audit = AlertRuleAudit.objects.get()
    assert (audit.rule_id, audit.changes) == (on.pk, {"active": [True, False]})
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
    audit = AlertRuleAudit.objects.get()
    assert (audit.rule_id, audit.action, audit.actor, audit.source) == (pk, "delete", None, "admin")
    assert audit.changes["message"] == ["gone", None]
    assert audit.changes["owner_id"][0] is not None


def test_each_door_records_its_source_and_actor(alice, admin_user):
    """The API, the admin and the alerts page each leave an audit row naming themselves."""
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

    rows = [(a.rule_id, a.action, a.actor.username, a.source)
            for a in AlertRuleAudit.objects.order_by("id")]  # fmt: skip
    web_pk = AlertRule.objects.exclude(pk=api_pk).get().pk
    assert rows == [
        (api_pk, "create", "alice", "api"),
        (web_pk, "create", "alice", "web"),
        (api_pk, "update", "admin", "admin"),
    ]
    # Only the admin's change is in Django's admin log (the API and page have their audit).
    assert [e.object_id for e in LogEntry.objects.all()] == [str(api_pk)]
