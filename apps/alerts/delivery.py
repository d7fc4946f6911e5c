"""Pushing stored alert events live to their owners (the pipeline does it for the events
it fires; this is for events made elsewhere, such as the admin's test-fire)."""

from __future__ import annotations

from collections.abc import Iterable

from apps.alerts.models import AlertEvent
from apps.alerts.selectors import event_message
from apps.ops import fanout


def push_events(events: Iterable[AlertEvent]) -> None:
    fanout.publisher().publish_alerts([{"owner": e.owner_id, **event_message(e)} for e in events])
