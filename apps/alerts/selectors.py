"""Reads of alert rules and events, for the API, the admin and the alerts page."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from apps.alerts import messages
from apps.alerts.models import AlertEvent, AlertRule


def user_rules(owner) -> QuerySet[AlertRule]:
    """The owner's rules, newest first. Nobody else's: another user's rule is not found."""
    return AlertRule.objects.filter(owner=owner).order_by("-created_at", "-id")


def user_events(
    owner,
    *,
    symbol: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    acknowledged: bool | None = None,
    rule: int | None = None,
) -> QuerySet[AlertEvent]:
    """The owner's events, newest first (the (owner, -ts) index), filtered as asked."""
    events = AlertEvent.objects.filter(owner=owner)
    if symbol:
        events = events.filter(symbol=symbol.upper())
    if since is not None:
        events = events.filter(ts__gte=since)
    if until is not None:
        events = events.filter(ts__lt=until)
    if acknowledged is not None:
        events = events.filter(acknowledged=acknowledged)
    if rule is not None:
        events = events.filter(rule_id=rule)
    return events.order_by("-ts", "-id")


def event_message(event: AlertEvent) -> dict:
    """An event as the API lists it and the WebSocket `alert` message carries it."""
    return messages.alert_event(
        id=event.pk,
        rule=event.rule_id,
        symbol=event.symbol,
        ts=event.ts,
        condition=event.condition,
        price=event.price,
        value=event.value,
        message=event.message,
        acknowledged=event.acknowledged,
    )
