"""Number formats of the dashboard, the same ones static/js/format.js applies to live values."""

from __future__ import annotations

from django import template

register = template.Library()
DASH = "—"  # a value not known yet (no tick, an indicator before warm-up)


@register.filter
def price(value: float | None) -> str:
    return DASH if value is None else f"{value:,.2f}"


@register.filter
def signed(value: float | None, digits: int = 2) -> str:
    """A change with its sign, so the direction reads without colour."""
    return DASH if value is None else f"{value:+,.{int(digits)}f}"


@register.filter
def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:+.2f}%"


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
    """up / down / flat: drives the arrow shown next to a change."""
    if value is None or value == 0:
        return "flat"
    return "up" if value > 0 else "down"
