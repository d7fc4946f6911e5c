"""Number formats of the dashboard, the same ones static/js/format.js applies to live values."""

from __future__ import annotations

from django import template

from apps.alerts.conditions import CONDITIONS
from apps.market import display
from apps.market.display import DASH

register = template.Library()
PRICE_VALUES = {"price", "sma_20"}  # alert values in price units (conditions.Condition.value)


@register.filter
def price(value: float | None) -> str:
    """A price at the symbol's tick size (apps/market/display.py)."""
    return display.price_text(value)


@register.filter
def signed(value: float | None, digits: int = 2) -> str:
    """A change with its sign, so the direction reads without colour; `0.00` has none."""
    return display.signed_text(value, digits)


@register.filter
def percent(value: float | None) -> str:
    return display.signed_text(value, 2, "%", group=False)


@register.filter
def volume(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


@register.filter
def number(value: float | None, digits: int = 2) -> str:
    """An indicator value (full precision stays in the data; this is for reading)."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{int(digits)}f}"


@register.filter
def direction(value: float | None) -> str:
    """up / down / flat: drives the arrow shown next to a change (flat when it reads 0.00)."""
    return display.direction(value)


@register.filter
def alert_value(value: float | None, condition: str) -> str:
    """An alert's value or threshold as its condition means it: a price at its tick size,
    anything else (a percent, an RSI level, a multiple, a z-score) to 2 decimals."""
    spec = CONDITIONS.get(condition)
    if spec is not None and (spec.threshold == "price" or spec.value in PRICE_VALUES):
        return display.price_text(value)
    return number(value, 2)


@register.filter
def condition_label(code: str) -> str:
    spec = CONDITIONS.get(code)
    return spec.label if spec else code
