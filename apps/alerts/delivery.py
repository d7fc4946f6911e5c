"""Pushing stored alert events live to their owners (the pipeline does it for the events
it fires; this is for events made elsewhere, such as the admin's test-fire)."""

from __future__ import annotations

from collections.abc import Iterable

from apps.alerts.models import AlertEvent
from apps.streaming.publisher import publish_alerts


def event_fields(event: AlertEvent) -> dict:
    """An event as `messages.alert_event` takes it, plus its owner."""
    return {
        "owner": event.owner_id,
        "id": event.pk,
        "rule": event.rule_id,
        "symbol": event.symbol,
        "ts": event.ts,
        "condition": event.condition,
        "price": event.price,
        "value": event.value,
        "message": event.message,
        "acknowledged": event.acknowledged,
    }


def push_events(events: Iterable[AlertEvent]) -> None:
    publish_alerts([event_fields(e) for e in events])
