"""Changing alert rules: every change goes through here, so each is audited with its door.

django-auditlog records each rule's create, update and delete itself (apps/accounts/audit.py
registers AlertRule); these functions say who made the change and through which door, and
make sure each changed rule is saved one by one, so each leaves its own entry.

Also what else changes alerts outside the pipeline: test-firing a rule, acknowledging events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from auditlog.models import LogEntry
from django.db import transaction
from django.utils import timezone

from apps.accounts import audit
from apps.alerts import conditions, delivery
from apps.alerts.models import AlertEvent, AlertRule
from apps.market import selectors as market_selectors
from apps.market.models import Symbol


def rule_save(rule: AlertRule, *, actor, source: str) -> LogEntry | None:
    """Validate and store a rule; answer the audit entry of what changed (None when nothing
    did). `source` is the door: admin, api, web, command, shell or pipeline."""
    rule.full_clean()
    with transaction.atomic(), audit.door(source, actor=actor) as recorded:
        if not (rule._state.adding or rule.pk is None):
            # Lock the row: the "before" the audit reads is then the row this save replaces.
            AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
        rule.save()
    entry = next((e for e in reversed(recorded) if str(e.object_pk) == str(rule.pk)), None)
    # As stored (JSON lists, the object's key as text), not as auditlog built it.
    return None if entry is None else LogEntry.objects.get(pk=entry.pk)


def rules_set_active(
    rules,
    *,
    active: bool,
    actor,
    source: str,
    on_change: Callable[[AlertRule], None] | None = None,
) -> int:
    """Enable or disable rules (admin actions, the alerts page); each rule that changed is
    saved, and so audited, on its own.

    `on_change` is called with each rule that changed, inside the same transaction (the
    admin writes its log entry there, so the log names exactly the rules the audit does).
    """
    changed = 0
    with transaction.atomic(), audit.door(source, actor=actor):
        for rule in rules.select_for_update():
            if rule.active != active:
                rule.active = active
                rule.save(update_fields=["active", "updated_at"])
                changed += 1
                if on_change is not None:
                    on_change(rule)
    return changed


def rule_delete(rule: AlertRule, *, actor, source: str) -> None:
    """Delete a rule (and its events); its audit entry keeps what it was."""
    with transaction.atomic(), audit.door(source, actor=actor):
        rule.delete()


TEST_PREFIX = "[test] "


def _test_value(condition: str, hot: dict, threshold: float | None) -> float:
    """The value a test event shows: what the condition watches, as the hot state has it.

    A value the hot state does not hold (an indicator before warm-up, a volume ratio) falls
    back to the threshold, then the price: a test event only has to look like a real one.
    """
    watched = conditions.CONDITIONS[condition].value
    indicators = hot.get("indicators") or {}
    value = {
        "price": hot.get("price"),
        "change %": hot.get("change_pct"),
    }.get(watched, indicators.get(watched))
    if value is None:
        value = threshold if threshold is not None else hot["price"]
    return float(value)


def rule_test_fire(rule: AlertRule, *, now: datetime | None = None) -> AlertEvent | None:
    """Fire `rule` once, now, at its symbol's latest price, and push the event to its owner.

    The event is real (listed, acknowledged, pushed like any other) and its message starts
    with "[test] ". A rule for every symbol fires for the first active symbol that has a
    price. The rule itself is left alone (`last_fired_at`, `once`): a test changes nothing
    about when it fires next. None when there is no price to fire at yet.
    """
    if rule.symbol_id:
        tickers = [rule.symbol_id]
    else:
        tickers = list(
            Symbol.objects.filter(active=True).order_by("ticker").values_list("ticker", flat=True)
        )
    states = market_selectors.hot_states(tickers)
    ticker = next((t for t in tickers if states[t] is not None), None)
    if ticker is None:
        return None
    hot = states[ticker]
    value = _test_value(rule.condition, hot, rule.threshold)
    text = conditions.render_message(
        rule.message, symbol=ticker, price=hot["price"], value=value, condition=rule.condition
    )
    event = AlertEvent.objects.create(
        rule=rule,
        owner_id=rule.owner_id,
        symbol=ticker,
        ts=now or timezone.now(),
        condition=rule.condition,
        price=hot["price"],
        value=value,
        message=(TEST_PREFIX + text)[: AlertEvent._meta.get_field("message").max_length],
    )
    transaction.on_commit(lambda: delivery.push_events([event]))
    return event


def events_acknowledge(*, owner, ids: Iterable[int]) -> int:
    """Mark the owner's events among `ids` acknowledged (others' ids are ignored).

    Idempotent: acknowledging twice changes nothing; answers how many were newly marked.
    """
    return AlertEvent.objects.filter(owner=owner, pk__in=list(ids), acknowledged=False).update(
        acknowledged=True
    )


def event_acknowledge(event: AlertEvent) -> AlertEvent:
    """Acknowledge one event (idempotent) and answer it as stored."""
    if not event.acknowledged:
        AlertEvent.objects.filter(pk=event.pk).update(acknowledged=True)
        event.acknowledged = True
    return event
