"""Alert rules and the events they fire (their changes are in the audit log: docs/security.md).

Their tables: docs/architecture.md#tables.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from apps.alerts import conditions
from apps.market.models import Symbol


class AlertRule(models.Model):
    """What a user wants to be told about one symbol (or every active symbol)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_rules"
    )
    symbol = models.ForeignKey(
        Symbol,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
        help_text="Empty: every active symbol (written * in the API).",
    )
    condition = models.CharField(max_length=32, choices=conditions.CONDITION_CHOICES)
    threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="A price level, a percent, an RSI level or a volume multiple, by condition.",
    )
    window_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="For change % conditions: the window looked back over."
    )
    frequency = models.CharField(
        max_length=16, choices=conditions.FREQUENCIES, default=conditions.ONCE_PER_BAR
    )
    cooldown_seconds = models.PositiveIntegerField(
        default=0, help_text="With 'every time': seconds after an event before the next."
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="After this the rule is inactive."
    )
    message = models.CharField(
        max_length=200,
        blank=True,
        help_text="Placeholders: {symbol} {price} {value} {condition}. Empty: a default.",
    )
    active = models.BooleanField(default=True)
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["active"], name="alerts_rule_active")]

    def __str__(self) -> str:
        level = "" if self.threshold is None else f" {self.threshold:g}"
        return f"#{self.pk} {self.symbol_id or conditions.ALL_SYMBOLS} {self.condition}{level}"

    def clean(self) -> None:
        errors = conditions.rule_errors(
            condition=self.condition,
            threshold=self.threshold,
            window_seconds=self.window_seconds,
            frequency=self.frequency,
            cooldown_seconds=self.cooldown_seconds,
            message=self.message,
        )
        if (
            self.expires_at is not None
            and self.expires_at <= timezone.now()
            and (self._state.adding or "expires_at" in self.changed_fields())
        ):
            errors["expires_at"] = "is in the past"
        if errors:
            raise ValidationError(errors)

    def changed_fields(self) -> set[str]:
        """Fields that differ from the stored row (all of them for a new rule)."""
        if self._state.adding or self.pk is None:
            return {f.attname for f in self._meta.concrete_fields}
        stored = type(self).objects.filter(pk=self.pk).values().first() or {}
        return {k for k, v in stored.items() if getattr(self, k) != v}


class AlertEvent(models.Model):
    """A rule fired on a tick. Unique per rule, symbol and tick, so a replay adds nothing."""

    # No index of their own: the unique (rule, symbol, ts) and the (owner, -ts) index lead
    # with them. Each index is written per event, and an event storm writes a thousand.
    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="alert_events",
        db_index=False,
    )
    symbol = models.CharField(max_length=16)
    ts = models.DateTimeField(help_text="The tick that fired the rule.")
    condition = models.CharField(max_length=32, choices=conditions.CONDITION_CHOICES)
    price = models.FloatField()
    value = models.FloatField(help_text="The value that fired (price, change %, RSI, ...).")
    message = models.CharField(max_length=400)
    acknowledged = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ts", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "symbol", "ts"], name="alerts_event_once")
        ]
        indexes = [models.Index(fields=["owner", "-ts"], name="alerts_event_owner_ts")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.ts.isoformat()} {self.message}"
