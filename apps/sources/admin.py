"""Replays in the admin: their progress, and pause, resume and stop (docs/sources.md#replay)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.sources import replay
from apps.sources.models import Replay


@admin.register(Replay)
class ReplayAdmin(admin.ModelAdmin):
    list_display = ["file", "speed", "state", "position", "ticks", "stored", "lag_ms", "updated_at"]
    list_filter = ["state"]
    readonly_fields = [f.name for f in Replay._meta.fields]
    actions = ["pause", "resume", "stop"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a replay starts from the command line: `manage.py replay FILE`

    def _set(self, request: HttpRequest, queryset: QuerySet[Replay], state: str) -> None:
        changed = replay.control(ids=list(queryset.values_list("id", flat=True)), state=state)
        self.message_user(request, f"{changed} replay(s) {state}.", messages.SUCCESS)

    @admin.action(description="Pause selected replays", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Replay]) -> None:
        self._set(request, queryset, Replay.PAUSED)

    @admin.action(description="Resume selected replays", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Replay]) -> None:
        self._set(request, queryset, Replay.RUNNING)

    @admin.action(description="Stop selected replays", permissions=["change"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Replay]) -> None:
        self._set(request, queryset, Replay.STOPPED)
