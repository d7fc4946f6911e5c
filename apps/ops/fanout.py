"""The port through which lower layers hand messages to the WebSocket fan-out.

The pipeline (`apps.ingest`) and alerts sit below `apps.streaming`, which owns the channel
groups and the consumers, and may not import it (docs/architecture.md, "Layers"). They
publish through this port instead; `apps.streaming` installs its publisher here when its
app is ready. Until then (a process without the streaming app) publishing does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Publisher(Protocol):
    def prepare_batch(self, ticks: list[dict]) -> object:
        """The market group's message for a batch's tick messages, serialized ahead of its
        send where the channel layer can: callable from any thread."""

    def publish_batch(
        self,
        ticks: list[dict],
        *,
        watched: set[str],
        alerts: Sequence[dict],
        prepared: object | None,
    ) -> None:
        """A batch's tick messages to the market group and the watched symbols' groups, and
        its fired alert events (each with its `owner`) to their owners."""

    def publish_overview(self, overview: dict) -> None:
        """A market overview message to the market group."""

    def publish_alerts(self, events: Sequence[dict]) -> None:
        """Alert events (each with its `owner`) to their owners' sockets."""


class _Silent:
    """The publisher of a process that serves no WebSocket fan-out."""

    def prepare_batch(self, ticks: list[dict]) -> object:
        return None

    def publish_batch(self, ticks, *, watched, alerts, prepared) -> None:
        return None

    def publish_overview(self, overview: dict) -> None:
        return None

    def publish_alerts(self, events: Sequence[dict]) -> None:
        return None


_publisher: Publisher = _Silent()


def install(publisher: Publisher) -> None:
    """Called once per process by the app that owns the fan-out."""
    global _publisher
    _publisher = publisher


def publisher() -> Publisher:
    return _publisher
