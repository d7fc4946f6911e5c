"""A replay's run, which the admin pauses, resumes and stops (docs/sources.md#replay)."""

from __future__ import annotations

from django.db import models


class Replay(models.Model):
    """One `manage.py replay` run: what it replays, how far it got, and the state the admin
    sets (the run reads it at least twice a second)."""

    RUNNING, PAUSED, STOPPED, FINISHED, FAILED = (
        "running",
        "paused",
        "stopped",
        "finished",
        "failed",
    )
    STATE_CHOICES = [
        (RUNNING, "Running"), (PAUSED, "Paused"), (STOPPED, "Stopped"),
        (FINISHED, "Finished"), (FAILED, "Failed"),
    ]  # fmt: skip

    file = models.CharField(max_length=500)
    speed = models.FloatField(help_text="Times real time; 0: as fast as the pipeline goes.")
    shift = models.DurationField(help_text="Added to the file's times (--shift-to-now).")
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=RUNNING)
    position = models.DateTimeField(null=True, blank=True, help_text="The newest tick replayed.")
    ticks = models.IntegerField(default=0, help_text="Ticks replayed so far.")
    stored = models.IntegerField(default=0, help_text="Of them, new to the database.")
    lag_ms = models.FloatField(
        default=0.0, help_text="The most a tick went out after its time at this speed."
    )
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.file} at {self.speed:g}x ({self.state})"
