"""What an alert rule can watch for: the vocabulary the models, API, admin and evaluator share.

Each condition says what its threshold means and which value an event keeps, so validation
(a threshold that does not fit the condition is an error naming the field) and evaluation
read the same table.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

from apps.market.display import price_text

PRICE_ABOVE = "price_above"
PRICE_BELOW = "price_below"
CROSSES_ABOVE = "crosses_above"
CROSSES_BELOW = "crosses_below"
CHANGE_UP = "change_pct_up"
CHANGE_DOWN = "change_pct_down"
RSI_ABOVE = "rsi_above"
RSI_BELOW = "rsi_below"
ANOMALY = "anomaly"
SMA_CROSSES_ABOVE_EMA = "sma_crosses_above_ema"
SMA_CROSSES_BELOW_EMA = "sma_crosses_below_ema"
VOLUME_SPIKE = "volume_spike"

ONCE = "once"
ONCE_PER_BAR = "once_per_bar"
EVERY_TIME = "every_time"
FREQUENCIES = [
    (ONCE, "Once (then the rule disables itself)"),
    (ONCE_PER_BAR, "At most once per 1-minute bar"),
    (EVERY_TIME, "Every time (after the cooldown)"),
]

ALL_SYMBOLS = "*"  # a rule for every active symbol
VOLUME_BARS = 20  # a volume spike compares with the average of this many previous 1m bars
WINDOW_MAX_SECONDS = 7 * 24 * 3600  # ticks are kept 7 days by default
COOLDOWN_MAX_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Condition:
    code: str
    label: str
    threshold: str  # "price", "percent", "rsi", "multiple" or "" (takes none)
    value: str  # what an event of this condition keeps as its value
    needs_window: bool = False


CONDITIONS: dict[str, Condition] = {
    c.code: c
    for c in [
        Condition(PRICE_ABOVE, "Price above", "price", "price"),
        Condition(PRICE_BELOW, "Price below", "price", "price"),
        Condition(CROSSES_ABOVE, "Price crosses above", "price", "price"),
        Condition(CROSSES_BELOW, "Price crosses below", "price", "price"),
        Condition(CHANGE_UP, "Change % up over a window", "percent", "change %", True),
        Condition(CHANGE_DOWN, "Change % down over a window", "percent", "change %", True),
        Condition(RSI_ABOVE, "RSI 14 above", "rsi", "rsi_14"),
        Condition(RSI_BELOW, "RSI 14 below", "rsi", "rsi_14"),
        Condition(ANOMALY, "Z-score anomaly", "", "zscore_20"),
        Condition(SMA_CROSSES_ABOVE_EMA, "SMA 20 crosses above EMA 20", "", "sma_20"),
        Condition(SMA_CROSSES_BELOW_EMA, "SMA 20 crosses below EMA 20", "", "sma_20"),
        Condition(VOLUME_SPIKE, "1m volume above N x the 20-bar average", "multiple", "ratio"),
    ]
}
CONDITION_CHOICES = [(c.code, c.label) for c in CONDITIONS.values()]

PLACEHOLDERS = ("symbol", "price", "value", "condition")
DEFAULT_MESSAGE = "{symbol}: {condition} ({value}) at {price}"


def rule_errors(
    *,
    condition: str,
    threshold: float | None,
    window_seconds: int | None,
    frequency: str,
    cooldown_seconds: int | None,
    message: str,
) -> dict[str, str]:
    """Field name -> what is wrong, for a rule as a user entered it (empty when valid)."""
    errors: dict[str, str] = {}
    spec = CONDITIONS.get(condition)
    if spec is None:
        return {"condition": f"unknown condition {condition!r}"}
    kind = spec.threshold
    if not kind:
        if threshold is not None:
            errors["threshold"] = f"{condition} takes no threshold"
    elif threshold is None:
        errors["threshold"] = f"{condition} needs a threshold"
    elif not math.isfinite(threshold):
        errors["threshold"] = "must be a finite number"
    elif kind == "rsi" and not 0 < threshold < 100:
        errors["threshold"] = "an RSI level is between 0 and 100"
    elif threshold <= 0:
        errors["threshold"] = f"a {kind} threshold must be above 0"
    if spec.needs_window:
        if window_seconds is None:
            errors["window_seconds"] = f"{condition} needs a window in seconds"
        elif not 1 <= window_seconds <= WINDOW_MAX_SECONDS:
            errors["window_seconds"] = f"must be between 1 and {WINDOW_MAX_SECONDS} seconds"
    elif window_seconds is not None:
        errors["window_seconds"] = f"{condition} takes no window"
    if cooldown_seconds is not None and not 0 <= cooldown_seconds <= COOLDOWN_MAX_SECONDS:
        errors["cooldown_seconds"] = f"must be between 0 and {COOLDOWN_MAX_SECONDS} seconds"
    if frequency not in dict(FREQUENCIES):
        errors["frequency"] = f"unknown frequency {frequency!r}"
    problem = template_error(message)
    if problem:
        errors["message"] = problem
    return errors


def template_error(template: str) -> str | None:
    """Why a message template cannot be rendered, or None."""
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as e:
        return f"not a valid template: {e}"
    fields = [f for f, _, _ in parts if f is not None]
    if any(spec or conv for f, spec, conv in parts if f is not None):
        return "placeholders take no format, write {price} not {price:.2f}"
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        allowed = " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        return f"unknown placeholder {unknown[0]!r}; use {allowed}"
    return None


def render_message(
    template: str, *, symbol: str, price: float, value: float, condition: str
) -> str:
    return (template or DEFAULT_MESSAGE).format(
        symbol=symbol,
        price=price_text(price),  # at its tick size, as every page shows it
        value=f"{value:.6g}",
        condition=CONDITIONS[condition].label,
    )
