"""Incremental technical indicators, vectorised across symbols (numpy only, no Django).

Usage::

    engine = IndicatorEngine()
    values = engine.update(["AAPL", "MSFT"], [189.5, 411.2])  # field -> array per input row

See docs/contracts.md#indicators for the indicator contracts and core.py for the design.
"""

from .constants import DEFAULT_THRESHOLD, FIELDS, PRICE_MAX, PRICE_MIN, WARMUP, ZERO_STD_REL
from .core import IndicatorEngine

__all__ = [
    "DEFAULT_THRESHOLD",
    "FIELDS",
    "PRICE_MAX",
    "PRICE_MIN",
    "WARMUP",
    "ZERO_STD_REL",
    "IndicatorEngine",
]
