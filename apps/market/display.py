"""How a person reads a price: at the symbol's tick size (docs/contracts.md#dashboard).

US equities quote in $0.01 increments at or above $1.00 and in $0.0001 below it (Reg NMS
rule 612), so a price shows 2 decimals from $1.00 up and 4 below. Data (the API, messages)
keeps full precision; this is for pages, toasts and alert messages only. The browser's twin
is `price` in static/js/format.js.
"""

from __future__ import annotations

from apps.market.constants import SUB_PENNY_BELOW

DASH = "—"  # a value not known yet


def price_decimals(value: float) -> int:
    """2 decimals at or above $1.00, 4 below."""
    return 2 if abs(value) >= SUB_PENNY_BELOW else 4


def price_text(value: float | None) -> str:
    """A price at its tick size, grouped: `1,234.57`, `0.1235`; `—` when unknown."""
    if value is None:
        return DASH
    return f"{value:,.{price_decimals(value)}f}"


def signed_text(value: float | None, digits: int = 2, suffix: str = "", *, group=True) -> str:
    """A change with its sign (`+1.25`, `-0.40`), and no sign when it rounds to zero (`0.00`,
    never `-0.00`): the sign says the direction, and a zero has none."""
    if value is None:
        return DASH
    magnitude = f"{abs(value):{',' if group else ''}.{int(digits)}f}"
    if float(magnitude.replace(",", "")) == 0:
        return f"{magnitude}{suffix}"
    return f"{'+' if value > 0 else '-'}{magnitude}{suffix}"


def direction(value: float | None, digits: int = 2) -> str:
    """up / down / flat, as the value reads at `digits` decimals (a shown 0.00 is flat)."""
    if value is None or float(f"{abs(value):.{int(digits)}f}") == 0:
        return "flat"
    return "up" if value > 0 else "down"
