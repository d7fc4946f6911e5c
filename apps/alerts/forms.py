"""The alerts page's rule form: the model's own validation (`AlertRule.clean`)."""

from __future__ import annotations

from django import forms

from apps.alerts.models import AlertRule
from apps.market.models import Symbol


class RuleForm(forms.ModelForm):
    symbol = forms.ModelChoiceField(
        queryset=Symbol.objects.order_by("ticker"),
        required=False,
        empty_label="* (every active symbol)",
        help_text="Leave at * for every active symbol.",
    )

    class Meta:
        model = AlertRule
        fields = [
            "symbol", "condition", "threshold", "window_seconds", "frequency",
            "cooldown_seconds", "expires_at", "message",
        ]  # fmt: skip
        widgets = {
            "expires_at": forms.DateTimeInput(
                attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
            ),
            "threshold": forms.NumberInput(attrs={"step": "any"}),
        }
        labels = {
            "window_seconds": "Window (seconds)",
            "cooldown_seconds": "Cooldown (seconds)",
            "expires_at": "Expires at (UTC)",
        }
