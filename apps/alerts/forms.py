"""The alerts page's rule form: the model's own validation (`AlertRule.clean`)."""

from __future__ import annotations

from django import forms

from apps.alerts.conditions import ALL_SYMBOLS, CONDITIONS
from apps.alerts.models import AlertRule
from apps.market.models import Symbol

THRESHOLD_HELP = {
    "price": "A price, above 0.",
    "percent": "A percent, above 0.",
    "rsi": "An RSI level, between 0 and 100.",
    "multiple": "A multiple of the 20-bar average volume, above 0.",
}


def condition_fields() -> dict[str, dict]:
    """Per condition, the fields it uses: the page shows only those (static/js/alerts.js);
    without JavaScript every field shows and the server's validation decides."""
    return {
        code: {
            "threshold": c.threshold,
            "threshold_help": THRESHOLD_HELP.get(c.threshold, ""),
            "window": c.needs_window,
            "value_is_price": c.value in ("price", "sma_20"),
            "label": c.label,
        }
        for code, c in CONDITIONS.items()
    }


class RuleForm(forms.ModelForm):
    # No default: the user picks a symbol, or * for every active symbol, on purpose.
    symbol = forms.ChoiceField(
        help_text="A symbol, or * for every active symbol.",
        error_messages={"required": "Choose a symbol, or * for every active symbol."},
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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        symbols = Symbol.objects.order_by("ticker").values_list("ticker", "name")
        self.fields["symbol"].choices = [
            ("", "Choose a symbol…"),
            (ALL_SYMBOLS, "* (every active symbol)"),
            *((ticker, f"{ticker} · {name}") for ticker, name in symbols),
        ]
        condition = self.fields["condition"]
        condition.choices = [("", "Choose a condition…"), *condition.choices[1:]]
        # Used only with "every time": the page hides (and so does not send) it otherwise.
        self.fields["cooldown_seconds"].required = False

    def clean_symbol(self) -> Symbol | None:
        ticker = self.cleaned_data["symbol"]
        return None if ticker == ALL_SYMBOLS else Symbol.objects.get(ticker=ticker)

    def clean_cooldown_seconds(self) -> int:
        cooldown = self.cleaned_data.get("cooldown_seconds")
        return 0 if cooldown is None else cooldown
