"""The rule index: this process's active rules, reloaded when the rules' version changes."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from apps.alerts import conditions as c
from apps.market import keys
from apps.ops.timestamps import epoch_micros

_NEVER = np.iinfo(np.int64).max

CODES = {code: n for n, code in enumerate(c.CONDITIONS)}
FREQ_CODES = {code: n for n, (code, _) in enumerate(c.FREQUENCIES)}


@dataclass
class RuleIndex:
    """The active rules as columns (one row a rule), and which rows each symbol has."""

    version: bytes | None = None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    owners: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    windows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # µs
    frequencies: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    cooldowns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # µs
    expires: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # µs
    templates: list[str] = field(default_factory=list)
    by_symbol: dict[str, np.ndarray] = field(default_factory=dict)
    every_symbol: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def rows_for(self, symbol: str) -> np.ndarray:
        own = self.by_symbol.get(symbol)
        if own is None:
            return self.every_symbol
        return np.concatenate((own, self.every_symbol)) if len(self.every_symbol) else own

    @classmethod
    def load(cls, version: bytes | None) -> RuleIndex:
        from apps.alerts.models import AlertRule

        rows = list(
            AlertRule.objects.filter(active=True)
            .exclude(expires_at__lte=datetime.now(UTC))
            .order_by("id")
            .values_list(
                "id", "owner_id", "symbol_id", "condition", "threshold", "window_seconds",
                "frequency", "cooldown_seconds", "expires_at", "message",
            )
        )  # fmt: skip
        index = cls(version=version)
        if not rows:
            return index
        cols = list(zip(*rows, strict=True))
        index.ids = np.array(cols[0], np.int64)
        index.owners = np.array(cols[1], np.int64)
        index.codes = np.array([CODES[x] for x in cols[3]], np.int8)
        index.thresholds = np.array([np.nan if x is None else x for x in cols[4]], float)
        index.windows = np.array([(x or 0) * 1_000_000 for x in cols[5]], np.int64)
        index.frequencies = np.array([FREQ_CODES[x] for x in cols[6]], np.int8)
        index.cooldowns = np.array(cols[7], np.int64) * 1_000_000
        index.expires = np.array(
            [_NEVER if x is None else epoch_micros(x) for x in cols[8]], np.int64
        )
        index.templates = list(cols[9])
        grouped: dict[str | None, list[int]] = defaultdict(list)
        for row, symbol in enumerate(cols[2]):
            grouped[symbol].append(row)
        index.every_symbol = np.array(grouped.pop(None, []), np.int64)
        index.by_symbol = {s: np.array(r, np.int64) for s, r in grouped.items()}
        return index


_index = RuleIndex()


def new_rules_version() -> bytes:
    """A random token (not a counter: a counter restarts at the same values after Redis
    is flushed, and a worker would take its old index for current)."""
    return uuid.uuid4().hex.encode()


def rule_index(client) -> RuleIndex:
    """This process's rule index, reloaded if any rule changed since it was loaded."""
    global _index
    version = client.get(keys.ALERT_RULES_VERSION)
    if version is None:  # a new (or flushed) Redis: a fresh token, never one seen before
        client.set(keys.ALERT_RULES_VERSION, new_rules_version(), nx=True)
        version = client.get(keys.ALERT_RULES_VERSION)
    if version != _index.version:
        _index = RuleIndex.load(version)
    return _index
